# Registers each Catch2 TEST_CASE of a test executable as one ctest test (noclobber's own tests;
# never exported to users). Catch2 2.13's catch_discover_tests is replaced because it
#   - splits test names at ';' (a name like "a; b" became two ctest tests, "a" and " b", whose
#     filters matched nothing, so the test case never ran and ctest said "Passed"), and
#   - cannot turn tags into labels (ADD_TAGS_AS_LABELS is Catch2 3 only).
#
#   noclobber_discover_tests(<target> [PREFIX <text>] [TIMEOUT <s>] [LABELS <label>...]
#                            [SPEC <Catch2 test spec>] [FILE_TAGS])
#
# After each build the executable lists its test cases and tags (cmake/NoclobberCatchAddTests.cmake);
# every test case becomes a ctest test named <PREFIX><test case name>, labelled with LABELS and
# with each of its Catch2 tags (without brackets; hidden tags such as [.] are skipped, and hidden
# test cases are not registered). So `ctest -L concurrency` runs every [concurrency] test case.
# SPEC registers only the cases it selects (e.g. "[fault]" and "~[fault]" in two calls, with
# different LABELS and TIMEOUT). FILE_TAGS lists with Catch2's -# (each case also tagged
# [#<source file stem>]), so that SPEC can pick one file's cases out of a test bundle
# (cmake/NoclobberTestBundles.cmake).
# Each test runs with `--warn NoTests`: a filter that matches no test case fails instead of passing.
include_guard(GLOBAL)

set(NOCLOBBER_CATCH_ADD_TESTS_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/NoclobberCatchAddTests.cmake")

function(noclobber_discover_tests target)
  cmake_parse_arguments(arg "FILE_TAGS" "PREFIX;TIMEOUT;SPEC" "LABELS" ${ARGN})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 300)
  endif()
  # One file per call: a target discovered under two specs writes two.
  get_property(calls TARGET ${target} PROPERTY NOCLOBBER_DISCOVER_CALLS)
  if(NOT calls)
    set(calls 0)
  endif()
  math(EXPR calls "${calls} + 1")
  set_property(TARGET ${target} PROPERTY NOCLOBBER_DISCOVER_CALLS ${calls})
  set(tests_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_ctest_${calls}.cmake")
  string(REPLACE ";" "," labels "${arg_LABELS}") # passed through -D as one word
  add_custom_command(
    TARGET ${target} POST_BUILD
    BYPRODUCTS "${tests_file}"
    COMMAND "${CMAKE_COMMAND}" -D "TEST_EXECUTABLE=$<TARGET_FILE:${target}>"
            -D "TEST_WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR}" -D "TEST_PREFIX=${arg_PREFIX}"
            -D "TEST_TIMEOUT=${arg_TIMEOUT}" -D "TEST_LABELS=${labels}" -D "TEST_SPEC=${arg_SPEC}"
            -D "TEST_FILE_TAGS=${arg_FILE_TAGS}"
            -D "CTEST_FILE=${tests_file}"
            -P "${NOCLOBBER_CATCH_ADD_TESTS_SCRIPT}"
    VERBATIM)
  # Until the first build, ctest sees one failing placeholder instead of silently nothing.
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_ctest_include_${calls}.cmake")
  set(suffix "")
  if(calls GREATER 1)
    set(suffix "_${calls}") # ctest names must be unique
  endif()
  file(WRITE "${include_file}"
       "if(EXISTS \"${tests_file}\")\n  include(\"${tests_file}\")\nelse()\n"
       "  add_test(${target}_NOT_BUILT${suffix} ${target}_NOT_BUILT)\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()
