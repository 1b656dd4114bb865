# Drives one consumer test (see CMakeLists.txt in this directory):
#   cmake -DMODE=<subdirectory|fetchcontent|install|find_package|pkgconfig>
#         -DRDROP_SOURCE_DIR=<rdrop> -DWORK_DIR=<scratch> -DPREFIX=<install prefix>
#         -DGENERATOR=<generator> -DCXX=<compiler> [-DPKG_CONFIG=<pkg-config>]
#         -P run_consumer.cmake
# Every step runs from a clean scratch directory and must succeed; the built
# consumer must run and print "ok".
cmake_minimum_required(VERSION 3.16)

foreach(var MODE RDROP_SOURCE_DIR WORK_DIR GENERATOR CXX)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer: -D${var}=... is required")
  endif()
endforeach()
set(project_dir "${CMAKE_CURRENT_LIST_DIR}/project")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "run_consumer (${MODE}): '${cmd}' failed (${rc}):\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# Configures, builds and runs the consumer project with extra -D options.
function(consumer)
  set(build "${WORK_DIR}/build")
  run(${CMAKE_COMMAND} -S "${project_dir}" -B "${build}" -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX}
      -DRDROP_CONSUMER_MODE=${MODE} ${ARGN})
  run(${CMAKE_COMMAND} --build "${build}")
  run("${build}/consumer")
  message(STATUS "${last_output}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

if(MODE STREQUAL "subdirectory")
  consumer(-DRDROP_SOURCE_DIR=${RDROP_SOURCE_DIR})
elseif(MODE STREQUAL "fetchcontent")
  # What a release archive of the library holds; tests/, docs/ and examples/
  # are left out on purpose: a consumer build must not need them.
  set(stage "${WORK_DIR}/rdrop-src")
  file(MAKE_DIRECTORY "${stage}")
  foreach(item CMakeLists.txt LICENSE README.md cmake include)
    file(COPY "${RDROP_SOURCE_DIR}/${item}" DESTINATION "${stage}")
  endforeach()
  set(archive "${WORK_DIR}/rdrop.tar.gz")
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf "${archive}" rdrop-src WORKING_DIRECTORY "${WORK_DIR}"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run_consumer: could not pack ${stage}")
  endif()
  consumer(-DRDROP_ARCHIVE_URL=file://${archive})
elseif(MODE STREQUAL "install")
  # rdrop configured on its own (no tests, examples or benchmarks) and
  # installed into PREFIX; find_package and pkgconfig use it.
  if(NOT DEFINED PREFIX)
    message(FATAL_ERROR "run_consumer: -DPREFIX=... is required")
  endif()
  file(REMOVE_RECURSE "${PREFIX}")
  run(${CMAKE_COMMAND} -S "${RDROP_SOURCE_DIR}" -B "${WORK_DIR}/rdrop-build" -G "${GENERATOR}"
      -DCMAKE_CXX_COMPILER=${CXX} -DRDROP_BUILD_TESTS=OFF -DRDROP_BUILD_EXAMPLES=OFF -DRDROP_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install "${WORK_DIR}/rdrop-build" --prefix "${PREFIX}")
  foreach(file include/rdrop/rdrop.hpp share/cmake/rdrop/rdropConfig.cmake share/pkgconfig/rdrop.pc)
    if(NOT EXISTS "${PREFIX}/${file}")
      message(FATAL_ERROR "run_consumer: the install lacks ${file}")
    endif()
  endforeach()
elseif(MODE STREQUAL "find_package")
  consumer(-DCMAKE_PREFIX_PATH=${PREFIX} -DRDROP_EXPECTED_PREFIX=${PREFIX})
elseif(MODE STREQUAL "pkgconfig")
  if(NOT PKG_CONFIG)
    message(FATAL_ERROR "run_consumer: pkg-config not found (tools/install-deps.sh installs it)")
  endif()
  # Only the installed rdrop.pc, plus the system's directories for eigen3.pc.
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
  run(${PKG_CONFIG} --cflags rdrop)
  string(STRIP "${last_output}" cflags)
  if(NOT cflags MATCHES "${PREFIX}/share/pkgconfig/../../include")
    message(FATAL_ERROR "run_consumer: rdrop.pc gives '${cflags}', not the test prefix ${PREFIX}")
  endif()
  separate_arguments(cflags UNIX_COMMAND "${cflags}")
  run(${CXX} ${cflags} "${project_dir}/main.cpp" -o "${WORK_DIR}/consumer")
  run("${WORK_DIR}/consumer")
  message(STATUS "${last_output}")
else()
  message(FATAL_ERROR "run_consumer: unknown MODE '${MODE}'")
endif()
