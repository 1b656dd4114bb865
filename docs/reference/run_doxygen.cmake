# Builds rdrop's API reference with Doxygen, every warning an error.
#   cmake -DSOURCE_DIR=<rdrop> -DOUTPUT_DIR=<dir> -DDOXYGEN=<doxygen>
#         -DVERSION=<x.y.z> [-DPROBE=ON] -P run_doxygen.cmake
# PROBE=ON checks the check: it runs on a copy of the headers with one
# undocumented public function added, and passes only if Doxygen fails on
# exactly that name.
foreach(var SOURCE_DIR OUTPUT_DIR DOXYGEN VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_doxygen.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${OUTPUT_DIR}")
file(MAKE_DIRECTORY "${OUTPUT_DIR}")

set(headers "${SOURCE_DIR}/include/rdrop")
set(probe_name rdrop_reference_probe_undocumented)
if(PROBE)
  set(headers "${OUTPUT_DIR}/include/rdrop")
  file(COPY "${SOURCE_DIR}/include/rdrop/" DESTINATION "${headers}")
  file(APPEND "${headers}/reduction.hpp"
       "\nnamespace rdrop {\ninline int ${probe_name}(int x) { return x; }\n}  // namespace rdrop\n")
endif()

# Every runnable program of the documentation and every example trainer
# appears under "Examples".
file(GLOB doc_examples RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/docs/examples/*.cpp")
file(GLOB trainers RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/examples/*/main.cpp")
set(examples_dox "/// \\file examples.dox\n")
foreach(example IN LISTS doc_examples trainers)
  string(APPEND examples_dox "/// \\example ${example}\n")
endforeach()
file(WRITE "${OUTPUT_DIR}/examples.dox" "${examples_dox}")

file(GLOB pages "${SOURCE_DIR}/docs/*.md")
list(APPEND pages "${SOURCE_DIR}/docs/reference/mainpage.md")
set(RDROP_VERSION "${VERSION}")
set(RDROP_SOURCE_DIR "${SOURCE_DIR}")
set(RDROP_DOXYGEN_OUTPUT "${OUTPUT_DIR}")
set(RDROP_DOXYGEN_STRIP "${SOURCE_DIR}")
if(PROBE)
  set(RDROP_DOXYGEN_STRIP "${OUTPUT_DIR}")
endif()
list(JOIN pages " " pages)
set(RDROP_DOXYGEN_INPUT "${headers} ${pages} ${OUTPUT_DIR}/examples.dox")
configure_file("${SOURCE_DIR}/docs/reference/Doxyfile.in" "${OUTPUT_DIR}/Doxyfile" @ONLY)

execute_process(COMMAND "${DOXYGEN}" "${OUTPUT_DIR}/Doxyfile"
                WORKING_DIRECTORY "${OUTPUT_DIR}"
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(warnings "")
if(EXISTS "${OUTPUT_DIR}/warnings.log")
  file(READ "${OUTPUT_DIR}/warnings.log" warnings)
endif()

if(PROBE)
  if(result EQUAL 0 OR NOT warnings MATCHES "${probe_name}")
    message(FATAL_ERROR "The documentation check let an undocumented public function through "
                        "(doxygen exit ${result}):\n${warnings}${out}${err}")
  endif()
  message(STATUS "The documentation check failed, as it must, on the undocumented ${probe_name}")
elseif(NOT result EQUAL 0 OR NOT warnings STREQUAL "")
  message(FATAL_ERROR "Doxygen (exit ${result}): every public name needs documentation, "
                      "and the pages must build without warnings:\n${warnings}${out}${err}")
else()
  message(STATUS "API reference: ${OUTPUT_DIR}/html/index.html")
endif()
