# Compiles one file (syntax and template instantiation only) and checks the
# outcome:
#   cmake -DCXX=<compiler> -DINCLUDES=<dir|dir> -DSOURCE=<file.cpp>
#         -DEXPECT=<regex> -P check.cmake   expects failure, with the first
#         error a static_assert whose message matches EXPECT;
#   ... without -DEXPECT                    expects success.
cmake_minimum_required(VERSION 3.16)

set(args -std=c++17 -fsyntax-only)
string(REPLACE "|" ";" INCLUDES "${INCLUDES}")
foreach(dir IN LISTS INCLUDES)
  list(APPEND args -I${dir})
endforeach()
execute_process(COMMAND ${CXX} ${args} ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
get_filename_component(name "${SOURCE}" NAME)

if(NOT DEFINED EXPECT OR EXPECT STREQUAL "")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "compile_fail: ${name} should compile but did not:\n${out}")
  endif()
  message(STATUS "compile_fail: ${name} compiles, as it should")
  return()
endif()

if(rc EQUAL 0)
  message(FATAL_ERROR "compile_fail: ${name} compiled, but rdrop must reject it")
endif()
# Readable: the first error is rdrop's static_assert, not pages of Eigen.
string(REGEX MATCH "error:[^\n]*" first_error "${out}")
if(NOT first_error MATCHES "static.assert" OR NOT first_error MATCHES "${EXPECT}")
  message(FATAL_ERROR "compile_fail: the first error of ${name} is not rdrop's static_assert "
                      "matching '${EXPECT}':\n  ${first_error}\nfull output:\n${out}")
endif()
message(STATUS "compile_fail: ${name} is rejected with: ${first_error}")
