/// \file
/// rdrop's version: the one place it is written. CMakeLists.txt reads it
/// from here (as Eigen's reads Macros.h), and the CMake package, rdrop.pc,
/// debian/changelog and CHANGELOG.md are checked against it by the test
/// `version_agrees`.
#pragma once

/// Major version: 0 while the API may still change in a minor release.
#define RDROP_VERSION_MAJOR 0
/// Minor version: new features; before 1.0 also API changes (CHANGELOG.md).
#define RDROP_VERSION_MINOR 2
/// Patch version: fixes only, never an API change.
#define RDROP_VERSION_PATCH 0

#define RDROP_DETAIL_STRINGIZE_(x) #x
#define RDROP_DETAIL_STRINGIZE(x) RDROP_DETAIL_STRINGIZE_(x)

/// "major.minor.patch" as a string literal, for preprocessor and static use.
#define RDROP_VERSION_STRING                                                                    \
  RDROP_DETAIL_STRINGIZE(RDROP_VERSION_MAJOR)                                                   \
  "." RDROP_DETAIL_STRINGIZE(RDROP_VERSION_MINOR) "." RDROP_DETAIL_STRINGIZE(RDROP_VERSION_PATCH)

namespace rdrop {
/// "major.minor.patch" of these headers.
inline constexpr const char* version = RDROP_VERSION_STRING;
}  // namespace rdrop
