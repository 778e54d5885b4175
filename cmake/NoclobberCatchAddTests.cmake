# Script half of noclobber_discover_tests (cmake/NoclobberCatch.cmake), run after each build of a
# Catch2 test executable:
#   cmake -D TEST_EXECUTABLE=... -D TEST_WORKING_DIR=... -D TEST_PREFIX=... -D TEST_TIMEOUT=...
#         -D TEST_LABELS=a,b [-D TEST_SPEC=spec] [-D TEST_FILE_TAGS=TRUE] -D CTEST_FILE=...
#         -P NoclobberCatchAddTests.cmake
# Writes CTEST_FILE: one add_test per test case (those TEST_SPEC selects, when given), its labels =
# TEST_LABELS + the case's tags.
# Test names are kept whole: nothing here treats ';' as a list separator (names travel between
# lines with ';' swapped for the unit separator, and are written as bracket arguments).
cmake_minimum_required(VERSION 3.21)

string(ASCII 31 sep) # stands in for ';' while a name is inside a CMake list

# Runs the executable with ARGN (and -#, which tags each case [#<file stem>], with TEST_FILE_TAGS);
# sets `lines` to its stdout lines (';' swapped for `sep`).
set(file_tags_arg "")
if(TEST_FILE_TAGS)
  set(file_tags_arg "-#")
endif()
function(catch_lines)
  execute_process(
    COMMAND "${TEST_EXECUTABLE}" ${file_tags_arg} ${ARGN}
    WORKING_DIRECTORY "${TEST_WORKING_DIR}"
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    RESULT_VARIABLE rc)
  # Catch2 2 exits with the number of listed items; a negative or non-numeric code is a crash.
  if(NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${TEST_EXECUTABLE} ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
  string(REPLACE ";" "${sep}" out "${out}")
  string(REGEX MATCHALL "[^\n]+" out "${out}")
  set(lines "${out}" PARENT_SCOPE)
endfunction()

# Every visible test case (that TEST_SPEC selects).
set(spec_args "")
if(TEST_SPEC)
  set(spec_args "${TEST_SPEC}")
endif()
catch_lines(${spec_args} --list-test-names-only)
set(names "${lines}")

# Tags -> the names carrying each.
catch_lines(--list-tags)
set(tags "")
foreach(line IN LISTS lines)
  if(line MATCHES "^ *[0-9]+  +(.*)$")
    string(REGEX MATCHALL "\\[[^]]+\\]" found "${CMAKE_MATCH_1}")
    foreach(tag IN LISTS found)
      string(REGEX REPLACE "^\\[(.*)\\]$" "\\1" tag "${tag}")
      if(NOT tag MATCHES "^[.!]" AND tag MATCHES "^[A-Za-z0-9_:+-]+$")
        list(APPEND tags "${tag}")
      endif()
    endforeach()
  endif()
endforeach()
list(REMOVE_DUPLICATES tags)

string(REPLACE "," ";" base_labels "${TEST_LABELS}")
set(i 0)
foreach(name IN LISTS names)
  set(labels_${i} "${base_labels}")
  math(EXPR i "${i} + 1")
endforeach()
foreach(tag IN LISTS tags)
  catch_lines("[${tag}]" --list-test-names-only)
  set(i 0)
  foreach(name IN LISTS names)
    if(name IN_LIST lines)
      list(APPEND labels_${i} "${tag}")
    endif()
    math(EXPR i "${i} + 1")
  endforeach()
endforeach()

set(script "")
set(i 0)
foreach(name IN LISTS names)
  string(REPLACE "${sep}" ";" name "${name}")
  # A Catch2 test spec: ',' '[' ']' and '\' are special, so escape them; the name must match whole.
  string(REGEX REPLACE "([],[\\\\])" "\\\\\\1" spec "${name}")
  set(test "${TEST_PREFIX}${name}")
  list(JOIN labels_${i} ";" labels)
  string(APPEND script
         "add_test([==[${test}]==] [==[${TEST_EXECUTABLE}]==] [==[${spec}]==] --warn NoTests)\n"
         "set_tests_properties([==[${test}]==] PROPERTIES WORKING_DIRECTORY [==[${TEST_WORKING_DIR}]==]"
         " TIMEOUT ${TEST_TIMEOUT} LABELS [==[${labels}]==])\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE "${CTEST_FILE}" "${script}")
