// rdrop's version.
#pragma once

#define RDROP_VERSION_MAJOR 0
#define RDROP_VERSION_MINOR 1
#define RDROP_VERSION_PATCH 0

namespace rdrop {
/// "major.minor.patch" of these headers.
inline constexpr const char* version = "0.1.0";
}  // namespace rdrop
