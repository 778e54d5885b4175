# Settings for noclobber's own tests, benchmarks and examples (never exported to users).
#
#   noclobber_dev_flags    warnings-as-errors and the sanitizer flags, nothing else
#   noclobber_dev          noclobber::noclobber + noclobber_dev_flags: what every test, bench and
#                          example links
#   noclobber_add_subdirs  adds every subfolder with a CMakeLists.txt (blocks with third-party deps)
include_guard(GLOBAL)

if(NOT NOCLOBBER_SANITIZE MATCHES "^(|thread|address|undefined|address,undefined|undefined,address)$")
  message(FATAL_ERROR "NOCLOBBER_SANITIZE='${NOCLOBBER_SANITIZE}' is not supported: use '', 'thread' or "
                      "'address,undefined'")
endif()

add_library(noclobber_dev_flags INTERFACE)
target_compile_options(noclobber_dev_flags INTERFACE -Wall -Wextra -Wpedantic -Werror)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  target_compile_options(noclobber_dev_flags INTERFACE -Wthread-safety)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # GCC 12 warns falsely once read_modify_write is inlined into a caller (at -O2 and -O3):
  # -Wmaybe-uninitialized on a std::optional's payload, even where it is checked first
  # (`opt ? f(*opt) : nullopt`, `opt.value_or(...)`), and at -O3 -Wrestrict inside libstdc++'s
  # `"literal" + std::string` (GCC bug 105329). Definite -Wuninitialized stays on, and the clang
  # builds keep -Wsometimes-uninitialized.
  target_compile_options(noclobber_dev_flags INTERFACE -Wno-maybe-uninitialized -Wno-restrict)
endif()
if(NOCLOBBER_SANITIZE)
  target_compile_options(noclobber_dev_flags INTERFACE -fsanitize=${NOCLOBBER_SANITIZE} -fno-omit-frame-pointer
                                                       -fno-sanitize-recover=all)
  target_link_options(noclobber_dev_flags INTERFACE -fsanitize=${NOCLOBBER_SANITIZE})
endif()

add_library(noclobber_dev INTERFACE)
target_link_libraries(noclobber_dev INTERFACE noclobber::noclobber noclobber_dev_flags)

# noclobber_add_subdirs(<dir>): add every immediate subfolder of <dir> that has a CMakeLists.txt.
# Blocks with their own dependencies (sqlite, libpq, asio, ...) live in such folders.
function(noclobber_add_subdirs dir)
  file(GLOB children LIST_DIRECTORIES true CONFIGURE_DEPENDS "${dir}/*")
  foreach(child ${children})
    if(IS_DIRECTORY "${child}" AND EXISTS "${child}/CMakeLists.txt")
      add_subdirectory("${child}")
    endif()
  endforeach()
endfunction()
