# The test version_agrees: the version is written once, in
# include/rdrop/version.hpp (CMakeLists.txt reads it from there); everything
# else that states it must agree.
#   cmake -DSOURCE_DIR=<rdrop> -DBINARY_DIR=<top build dir> -DVERSION=<PROJECT_VERSION> -P check_version.cmake
foreach(var SOURCE_DIR BINARY_DIR VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_version.cmake: -D${var}=... is required")
  endif()
endforeach()

set(errors "")
function(expect what found)
  if(NOT found STREQUAL VERSION)
    set(errors "${errors}\n  ${what}: '${found}'" PARENT_SCOPE)
  endif()
endfunction()

file(READ "${SOURCE_DIR}/include/rdrop/version.hpp" header)
set(parts "")
foreach(part MAJOR MINOR PATCH)
  if(NOT header MATCHES "\n#define RDROP_VERSION_${part} ([0-9]+)\n")
    message(FATAL_ERROR "include/rdrop/version.hpp has no '#define RDROP_VERSION_${part} <number>' line")
  endif()
  list(APPEND parts ${CMAKE_MATCH_1})
endforeach()
list(JOIN parts "." header_version)
expect("include/rdrop/version.hpp" "${header_version}")

file(STRINGS "${SOURCE_DIR}/debian/changelog" first LIMIT_COUNT 1)
string(REGEX REPLACE "^rdrop \\(([^)]*)\\).*" "\\1" debian_version "${first}")
expect("debian/changelog (newest entry; a native package: no Debian revision)" "${debian_version}")

# The newest entry is the first level-2 heading, whatever its form.
file(STRINGS "${SOURCE_DIR}/CHANGELOG.md" entries REGEX "^## ")
list(GET entries 0 newest)
if(newest MATCHES "^## \\[([^]]*)\\]")
  set(changelog_version "${CMAKE_MATCH_1}")
else()
  set(changelog_version "${newest}")
endif()
expect("CHANGELOG.md (newest entry)" "${changelog_version}")

file(STRINGS "${BINARY_DIR}/rdropConfigVersion.cmake" line REGEX "^set\\(PACKAGE_VERSION \"")
string(REGEX REPLACE "^set\\(PACKAGE_VERSION \"([^\"]*)\"\\)" "\\1" config_version "${line}")
expect("rdropConfigVersion.cmake" "${config_version}")

file(STRINGS "${BINARY_DIR}/rdrop.pc" line REGEX "^Version: ")
string(REGEX REPLACE "^Version: " "" pc_version "${line}")
expect("rdrop.pc" "${pc_version}")

if(errors)
  message(FATAL_ERROR "The version is ${VERSION} (include/rdrop/version.hpp, read by CMakeLists.txt); these disagree:${errors}")
endif()
message(STATUS "version ${VERSION}: version.hpp, debian/changelog, CHANGELOG.md, rdropConfigVersion.cmake and rdrop.pc agree")
