# ctest scripts for the classifier example.
#   cmake -DCLASSIFIER=<exe> -DDATA=<dir> -DMIN_ACCURACY=<x> -P smoke_test.cmake
#     trains on a small slice; the last line, test_accuracy=<value>, must be
#     at least MIN_ACCURACY. Exits 77 (ctest: skipped) without the data set.
#   cmake -DCLASSIFIER=<exe> -DMODE=missing-data -P smoke_test.cmake
#     with a data directory that does not exist, the classifier must fail,
#     naming the file and the package to install.
if(MODE STREQUAL "missing-data")
  set(nowhere "${CMAKE_CURRENT_BINARY_DIR}/rdrop-no-such-directory")
  execute_process(COMMAND "${CLASSIFIER}" --data "${nowhere}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  message("${err}")
  if(rc EQUAL 0)
    message(FATAL_ERROR "the classifier succeeded without data")
  endif()
  foreach(expected "${nowhere}/train-images-idx3-ubyte.gz" "apt-get install dataset-fashion-mnist")
    string(FIND "${err}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the error message does not mention '${expected}'")
    endif()
  endforeach()
  return()
endif()

if(NOT EXISTS "${DATA}/train-images-idx3-ubyte.gz")
  message("Fashion-MNIST not found in ${DATA} (apt-get install dataset-fashion-mnist): skipping")
  cmake_language(EXIT 77)
endif()
execute_process(
  COMMAND "${CLASSIFIER}" --limit 3000 --epochs 1 --batch 64 --mc-passes 2 --threads 1 --data "${DATA}"
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "classifier exited with ${rc}")
endif()
string(STRIP "${out}" out)
string(REGEX MATCH "test_accuracy=([0-9.]+)$" last_line "${out}")
if(NOT last_line)
  message(FATAL_ERROR "the last line is not test_accuracy=<value>")
endif()
if(CMAKE_MATCH_1 LESS MIN_ACCURACY)
  message(FATAL_ERROR "test accuracy ${CMAKE_MATCH_1} < ${MIN_ACCURACY}")
endif()
message("smoke test passed: test accuracy ${CMAKE_MATCH_1} >= ${MIN_ACCURACY}")
