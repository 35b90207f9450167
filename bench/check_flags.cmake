# ctest driver for hipserve_bench_flag_test (bench/CMakeLists.txt); needs no GPU.
#   cmake -DPROGRAM=<exe> -DHELP=<regex> -DBAD=<case>|<case>... -P check_flags.cmake
# Runs `PROGRAM --help` (exit 0, stdout matching HELP, a flags list), then each bad case: a
# space-separated argument list whose first word is the flag at fault ("--reps 5",
# "--lens=1,x"); expects exit code 2 and that flag's name in stderr.
execute_process(COMMAND "${PROGRAM}" --help RESULT_VARIABLE rc OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --help: exit ${rc}, want 0\n${err}")
endif()
if(NOT out MATCHES "${HELP}" OR NOT out MATCHES "\nflags:\n")
  message(FATAL_ERROR "${PROGRAM} --help: no '${HELP}' / flags list in\n${out}")
endif()
message(STATUS "--help: exit 0, usage printed")

string(REPLACE "|" ";" cases "${BAD}")
foreach(bad IN LISTS cases)
  separate_arguments(args UNIX_COMMAND "${bad}")
  list(GET args 0 flag)
  string(REGEX REPLACE "=.*" "" flag "${flag}")
  string(REPLACE "-" "_" flag_name "${flag}")
  string(REGEX REPLACE "^__" "--" flag_name "${flag_name}")
  execute_process(COMMAND "${PROGRAM}" ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out
    ERROR_VARIABLE err)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "${PROGRAM} ${bad}: exit ${rc}, want 2\n${out}${err}")
  endif()
  string(FIND "${err}" "${flag_name}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${PROGRAM} ${bad}: stderr does not name ${flag_name}:\n${err}")
  endif()
  string(STRIP "${err}" err)
  message(STATUS "${bad}: exit 2, ${err}")
endforeach()
