# Test bundles (NOCLOBBER_TEST_BUNDLES; CI turns it on): a folder's test files compiled as a few
# unity executables instead of one executable per file. Most of a test file's compile time is the
# optimizer going over the same noclobber templates (the race harness, read_modify_write, the
# stores) that its neighbours instantiate too; in one translation unit they are compiled once.
# Measured: three test_race_* files at g++ -O2 take 56.7 s of CPU one by one, 28.5 s as one unit.
#
# What stays the same: every ctest test keeps its name (`<test name>: <test case>`), its labels and
# its timeout, and runs alone in its own process as before (`<bundle> "<test case>"`), so a test
# still cannot see another's state. Only the executable's name changes (<folder>_bundle_<n>).
#
# How a bundle is built (a generated <folder>_bundle_<n>.cpp): first every #include of its files,
# then each file inside a namespace of its own,
#     namespace nc_bundle_test_foo {
#     #include "/path/tests/test_foo.cpp"   // its own #includes are now no-ops (include guards)
#     }
# so the files' helpers (`wr`, `scripted_store`, ...) never collide. A file joins a bundle only if
# that is safe: it has no #define and no #if (a macro set before an #include would no longer reach
# the header, which the bundle includes first), no `template <>` and no `extern ` at the start of a
# line (a specialization must stay in its template's namespace, a C global such as `environ` in the
# global one). Other files keep an executable of their own.
#
#   noclobber_test_bundle_add(NAME <test name> SOURCE <file> [LIBS ...] [INCLUDES ...])
#       queue a test file for this folder's bundles (the caller checks noclobber_test_bundle_accepts);
#       NAME is what the file's own executable would have been called
#   noclobber_test_bundles(<prefix> MAKE <function>)
#       at the end of the folder: cuts the queue, in file name order, into bundles of
#       NOCLOBBER_TEST_BUNDLE_SIZE files and calls <function>(<target> <unity source> <libs> <includes>
#       <files>) for each; <function> creates the target and calls noclobber_discover_bundle_tests
#   noclobber_discover_bundle_tests(<target> SOURCES <file>... [LABELS ...] [TIMEOUT <s>])
#       registers each file's test cases under its old prefix `<test name>: ` (Catch2's -# file tags)
include_guard(GLOBAL)

option(NOCLOBBER_TEST_BUNDLES "Compile each test folder as a few unity executables (faster builds; CI)" OFF)
# 12: the core and server test folders (51 bundled files) took 285 CPU-s of g++ -O2 in 5 bundles
# of 12, 328 in 9 bundles of 6; the largest unit, 72 s, still leaves the 2 cores evenly busy.
set(NOCLOBBER_TEST_BUNDLE_SIZE 12 CACHE STRING "Test files per bundle (NOCLOBBER_TEST_BUNDLES)")

# noclobber_test_bundle_accepts(<out-var> <source>): TRUE when the file may share a translation unit.
function(noclobber_test_bundle_accepts out src)
  set(ok FALSE)
  if(NOCLOBBER_TEST_BUNDLES)
    file(STRINGS "${src}" unsafe REGEX "^[ \t]*#[ \t]*(define|if|undef)|^template <>|^extern ")
    if(NOT unsafe)
      set(ok TRUE)
    endif()
  endif()
  set(${out} ${ok} PARENT_SCOPE)
endfunction()

function(noclobber_test_bundle_add)
  cmake_parse_arguments(arg "" "NAME;SOURCE" "LIBS;INCLUDES" ${ARGN})
  get_filename_component(src "${arg_SOURCE}" ABSOLUTE)
  get_filename_component(stem "${src}" NAME_WE)
  get_property(taken DIRECTORY PROPERTY NOCLOBBER_BUNDLE_NAME_${stem} SET)
  if(taken) # Catch2's file tag [#stem] could not tell the two apart
    message(FATAL_ERROR "noclobber_test_bundle_add: a second file named ${stem} in one folder (${src})")
  endif()
  set_property(DIRECTORY PROPERTY NOCLOBBER_BUNDLE_NAME_${stem} "${arg_NAME}")
  set_property(DIRECTORY APPEND PROPERTY NOCLOBBER_BUNDLE_SOURCES "${src}")
  set_property(DIRECTORY APPEND PROPERTY NOCLOBBER_BUNDLE_LIBS ${arg_LIBS})
  set_property(DIRECTORY APPEND PROPERTY NOCLOBBER_BUNDLE_INCLUDES ${arg_INCLUDES})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${src}") # its #includes feed the unit
endfunction()

# The unity source of one bundle: the files' #includes, then each file in its own namespace.
function(nc_write_bundle_source path)
  set(includes "")
  set(bodies "")
  foreach(src ${ARGN})
    get_filename_component(dir "${src}" DIRECTORY)
    get_filename_component(stem "${src}" NAME_WE)
    file(STRINGS "${src}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line ${lines})
      string(REGEX MATCH "[<\"][^>\"]+[>\"]" header "${line}")
      string(SUBSTRING "${header}" 1 -1 name)
      string(REGEX REPLACE "[>\"]$" "" name "${name}")
      if(header MATCHES "^\"" AND EXISTS "${dir}/${name}")
        set(header "\"${dir}/${name}\"") # found next to the file, as it would be without the bundle
      endif()
      string(APPEND includes "#include ${header}\n")
    endforeach()
    string(APPEND bodies "namespace nc_bundle_${stem} {\n#include \"${src}\"\n} // namespace nc_bundle_${stem}\n")
  endforeach()
  file(CONFIGURE OUTPUT "${path}" CONTENT
       "// Generated by cmake/NoclobberTestBundles.cmake (NOCLOBBER_TEST_BUNDLES): do not edit.\n${includes}\n${bodies}"
       @ONLY)
endfunction()

function(noclobber_test_bundles prefix)
  cmake_parse_arguments(arg "" "MAKE" "" ${ARGN})
  get_property(sources DIRECTORY PROPERTY NOCLOBBER_BUNDLE_SOURCES)
  get_property(libs DIRECTORY PROPERTY NOCLOBBER_BUNDLE_LIBS)
  get_property(includes DIRECTORY PROPERTY NOCLOBBER_BUNDLE_INCLUDES)
  if(NOT sources)
    return()
  endif()
  list(SORT sources)
  if(libs)
    list(REMOVE_DUPLICATES libs)
  endif()
  if(includes)
    list(REMOVE_DUPLICATES includes)
  endif()
  if(NOT NOCLOBBER_TEST_BUNDLE_SIZE GREATER 0)
    message(FATAL_ERROR "NOCLOBBER_TEST_BUNDLE_SIZE must be a positive number, not '${NOCLOBBER_TEST_BUNDLE_SIZE}'")
  endif()
  list(LENGTH sources count)
  set(first 0)
  set(n 1)
  while(first LESS count)
    list(SUBLIST sources ${first} ${NOCLOBBER_TEST_BUNDLE_SIZE} batch)
    set(target "${prefix}_bundle_${n}")
    set(unity "${CMAKE_CURRENT_BINARY_DIR}/${target}.cpp")
    nc_write_bundle_source("${unity}" ${batch})
    cmake_language(CALL ${arg_MAKE} "${target}" "${unity}" "${libs}" "${includes}" "${batch}")
    # g++ warns when a type from an included file holds one from an anonymous namespace (a header's
    # class would then differ between translation units); here every file is "included", by design.
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-subobject-linkage>)
    math(EXPR first "${first} + ${NOCLOBBER_TEST_BUNDLE_SIZE}")
    math(EXPR n "${n} + 1")
  endwhile()
endfunction()

function(noclobber_discover_bundle_tests target)
  cmake_parse_arguments(arg "" "TIMEOUT" "SOURCES;LABELS" ${ARGN})
  foreach(src ${arg_SOURCES})
    get_filename_component(stem "${src}" NAME_WE)
    get_property(name DIRECTORY PROPERTY NOCLOBBER_BUNDLE_NAME_${stem})
    noclobber_discover_tests(${target} PREFIX "${name}: " SPEC "[#${stem}]~[.]" FILE_TAGS
                             LABELS ${arg_LABELS} TIMEOUT ${arg_TIMEOUT})
  endforeach()
endfunction()
