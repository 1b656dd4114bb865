# ctest scripts for the classifier's parity checks: a run against a
# reference run of the same seed and data, compared parameter by parameter
# (--save-params / --compare-params).
#   cmake -DMODE=<same|differs> -DCLASSIFIER=<exe> -DDATA=<dir> -DWORK=<dir>
#         -DARGS=<common flags> -DREFERENCE_ARGS=<flags> -DCANDIDATE_ARGS=<flags>
#         [-DMPIEXEC=<mpiexec> -DREFERENCE_RANKS=<n> -DCANDIDATE_RANKS=<n>]
#         [-DTOLERANCE=<x>] -P parity_test.cmake
#   same:    the candidate's parameters equal the reference's within TOLERANCE
#            (‖θ − θ_reference‖ / ‖θ_reference‖ over all of them);
#   differs: they differ by more than TOLERANCE (a mistake must show).
# With MPIEXEC the runs are started by it with that many ranks. Exits 77
# (skipped) without the data set.
if(NOT EXISTS "${DATA}/train-images-idx3-ubyte.gz")
  message("Fashion-MNIST not found in ${DATA} (apt-get install dataset-fashion-mnist): skipping")
  cmake_language(EXIT 77)
endif()
file(MAKE_DIRECTORY "${WORK}")
separate_arguments(args UNIX_COMMAND "${ARGS}")
separate_arguments(reference_args UNIX_COMMAND "${REFERENCE_ARGS}")
separate_arguments(candidate_args UNIX_COMMAND "${CANDIDATE_ARGS}")

function(launcher ranks out)
  set(cmd)
  if(MPIEXEC)
    set(cmd "${MPIEXEC}" -n ${ranks} --oversubscribe --bind-to none)
  endif()
  set(${out} ${cmd} PARENT_SCOPE)
endfunction()
# OpenMPI refuses to run as root (as CI does) unless told that it is meant.
set(ENV{OMPI_ALLOW_RUN_AS_ROOT} 1)
set(ENV{OMPI_ALLOW_RUN_AS_ROOT_CONFIRM} 1)
# Containers often forbid the cross-memory attach OpenMPI's shared-memory
# transport uses for large messages; plain copies work everywhere.
set(ENV{OMPI_MCA_btl_vader_single_copy_mechanism} none)

set(params "${WORK}/reference.bin")
launcher("${REFERENCE_RANKS}" cmd)
execute_process(COMMAND ${cmd} "${CLASSIFIER}" ${args} ${reference_args} --data "${DATA}" --save-params "${params}"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "reference run failed (${rc}):\n${out}${err}")
endif()
launcher("${CANDIDATE_RANKS}" cmd)
execute_process(COMMAND ${cmd} "${CLASSIFIER}" ${args} ${candidate_args} --data "${DATA}" --compare-params "${params}"
                        --compare-tolerance ${TOLERANCE}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
string(REGEX MATCH "param_rel_diff=([0-9.e+-]+)" found "${out}")
if(NOT found)
  message(FATAL_ERROR "the candidate run failed (${rc}) before comparing its parameters")
endif()
# The classifier exits with 2 when the difference exceeds the tolerance.
if(MODE STREQUAL "same" AND NOT rc EQUAL 0)
  message(FATAL_ERROR "parameters differ by ${CMAKE_MATCH_1} relative, more than ${TOLERANCE} (exit ${rc})")
elseif(MODE STREQUAL "differs" AND NOT rc EQUAL 2)
  message(FATAL_ERROR "parameters differ by only ${CMAKE_MATCH_1} relative, not more than ${TOLERANCE} (exit ${rc})")
endif()
message("${MODE}: parameters differ by ${CMAKE_MATCH_1} relative (tolerance ${TOLERANCE})")
