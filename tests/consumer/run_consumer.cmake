# Drives one consumer test (see CMakeLists.txt in this directory):
#   cmake -DMODE=<subdirectory|fetchcontent|install|find_package|pkgconfig|without_test_deps>
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

# Writes README.md's ```cmake block that contains `marker` to `file`, each
# (regex, replacement) pair of ARGN applied: the README's own lines, with
# this test's paths.
function(readme_snippet marker file)
  file(READ "${RDROP_SOURCE_DIR}/README.md" readme)
  string(REGEX MATCHALL "```cmake\n[^`]*```" blocks "${readme}")
  set(found "")
  foreach(block IN LISTS blocks)
    string(FIND "${block}" "${marker}" at)
    if(NOT at EQUAL -1)
      set(found "${block}")
    endif()
  endforeach()
  if(found STREQUAL "")
    message(FATAL_ERROR "run_consumer: README.md has no ```cmake block with '${marker}'")
  endif()
  string(REGEX REPLACE "^```cmake\n" "" found "${found}")
  string(REGEX REPLACE "```$" "" found "${found}")
  while(ARGN)
    list(POP_FRONT ARGN regex replacement)
    string(REGEX REPLACE "${regex}" "${replacement}" found "${found}")
  endwhile()
  message(STATUS "README.md's lines, as this test runs them:\n${found}")
  file(WRITE "${file}" "${found}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

if(MODE STREQUAL "subdirectory")
  readme_snippet("add_subdirectory(rdrop)" "${WORK_DIR}/snippet.cmake"
                 "add_subdirectory\\(rdrop\\)" "add_subdirectory(${RDROP_SOURCE_DIR} rdrop)")
  consumer(-DRDROP_CONSUMER_SNIPPET=${WORK_DIR}/snippet.cmake)
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
  readme_snippet("FetchContent_Declare(rdrop URL" "${WORK_DIR}/snippet.cmake"
                 "URL [^ )]+" "URL file://${archive}")
  consumer(-DRDROP_CONSUMER_SNIPPET=${WORK_DIR}/snippet.cmake)
elseif(MODE STREQUAL "install")
  # rdrop configured on its own (no tests, examples or benchmarks) and
  # installed into PREFIX; find_package and pkgconfig use it.
  if(NOT DEFINED PREFIX)
    message(FATAL_ERROR "run_consumer: -DPREFIX=... is required")
  endif()
  # Exactly the install commands of the README ("Use from CMake"), with its
  # paths (rdrop, rdrop-build, /opt/rdrop) replaced by this test's.
  file(REMOVE_RECURSE "${PREFIX}")
  file(READ "${RDROP_SOURCE_DIR}/README.md" readme)
  string(REGEX MATCH "```sh\n(cmake -S rdrop [^`]*cmake --install [^`]*)```" snippet "${readme}")
  if(NOT CMAKE_MATCH_1)
    message(FATAL_ERROR "run_consumer: README.md has no ```sh block with the install commands")
  endif()
  string(STRIP "${CMAKE_MATCH_1}" snippet)
  string(REPLACE "\n" ";" commands "${snippet}")
  foreach(command IN LISTS commands)
    string(REPLACE "-S rdrop " "-S ${RDROP_SOURCE_DIR} " command "${command}")
    string(REPLACE "rdrop-build" "${WORK_DIR}/rdrop-build" command "${command}")
    string(REPLACE "/opt/rdrop" "${PREFIX}" command "${command}")
    string(REGEX REPLACE "^cmake " "" command "${command}")
    separate_arguments(args UNIX_COMMAND "${command}")
    message(STATUS "README: cmake ${command}")
    run(${CMAKE_COMMAND} ${args})
  endforeach()
  foreach(file include/rdrop/rdrop.hpp share/cmake/rdrop/rdropConfig.cmake share/pkgconfig/rdrop.pc)
    if(NOT EXISTS "${PREFIX}/${file}")
      message(FATAL_ERROR "run_consumer: the install lacks ${file}")
    endif()
  endforeach()
elseif(MODE STREQUAL "without_test_deps")
  # A top-level configure on a machine without Catch2, Google Benchmark and
  # libtorch succeeds and says what it skips.
  run(${CMAKE_COMMAND} -S "${RDROP_SOURCE_DIR}" -B "${WORK_DIR}/rdrop-build" -G "${GENERATOR}"
      -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_DISABLE_FIND_PACKAGE_Catch2=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON)
  foreach(expected "Catch2 v2 not found" "Google Benchmark not found" "rdrop::torch is not provided")
    string(FIND "${last_output}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "run_consumer: the configure did not say '${expected}':\n${last_output}")
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
  # A C++20 consumer: rdrop.pc must not turn it back into C++17.
  run(${CXX} -std=c++20 -DRDROP_CONSUMER_CXX=202002L ${cflags} "${project_dir}/main.cpp" -o "${WORK_DIR}/consumer")
  run("${WORK_DIR}/consumer")
  message(STATUS "${last_output}")
else()
  message(FATAL_ERROR "run_consumer: unknown MODE '${MODE}'")
endif()
