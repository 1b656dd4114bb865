# The include direction of the headers (run by ctest as include_levels):
#   - include/rdrop/detail/ is the lowest level: its headers include only
#     other rdrop/detail/ headers, never a header above them;
#   - headers in include/rdrop/ include headers of their own level or detail/;
#   - the umbrella rdrop.hpp leaves out the optional adapters (torch.hpp,
#     mpi.hpp), which need dependencies the core does not.
#   cmake -DINCLUDE_DIR=<repo>/include -P check_include_levels.cmake
cmake_minimum_required(VERSION 3.16)
if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "check_include_levels: -DINCLUDE_DIR=... is required")
endif()

set(problems "")
file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/rdrop/*.hpp")
foreach(header IN LISTS headers)
  file(STRINGS "${INCLUDE_DIR}/${header}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]rdrop/")
  get_filename_component(dir "${header}" DIRECTORY)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*$" "\\1" included "${line}")
    if(NOT EXISTS "${INCLUDE_DIR}/${included}")
      string(APPEND problems "\n  ${header} includes ${included}, which does not exist")
    endif()
    get_filename_component(included_dir "${included}" DIRECTORY)
    if(dir STREQUAL "rdrop/detail" AND NOT included_dir STREQUAL "rdrop/detail")
      string(APPEND problems "\n  ${header} (detail) includes ${included}, a header above it")
    endif()
    if(NOT included_dir MATCHES "^rdrop(/detail)?$")
      string(APPEND problems "\n  ${header} includes ${included}, outside rdrop/ and rdrop/detail/")
    endif()
    if(header STREQUAL "rdrop/rdrop.hpp" AND included MATCHES "^rdrop/(torch|mpi)\\.hpp$")
      string(APPEND problems "\n  the umbrella rdrop.hpp includes the optional adapter ${included}")
    endif()
  endforeach()
endforeach()

if(problems)
  message(FATAL_ERROR "include levels broken:${problems}")
endif()
list(LENGTH headers count)
message(STATUS "include levels: ${count} headers, detail/ includes only detail/")
