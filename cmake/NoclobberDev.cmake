# Settings for noclobber's own tests, benchmarks and examples (never exported to users).
include_guard(GLOBAL)

add_library(noclobber_dev INTERFACE)
target_link_libraries(noclobber_dev INTERFACE noclobber::noclobber)
target_compile_options(noclobber_dev INTERFACE -Wall -Wextra -Wpedantic -Werror)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  target_compile_options(noclobber_dev INTERFACE -Wthread-safety)
endif()
if(NOCLOBBER_SANITIZE)
  target_compile_options(noclobber_dev INTERFACE -fsanitize=${NOCLOBBER_SANITIZE} -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=all)
  target_link_options(noclobber_dev INTERFACE -fsanitize=${NOCLOBBER_SANITIZE})
endif()

# noclobber_add_subdirs(<dir>): add every immediate subfolder of <dir> that has a CMakeLists.txt.
# Blocks with their own dependencies (sqlite, libpq, asio, ...) live in such folders.
function(noclobber_add_subdirs dir)
  file(GLOB children LIST_DIRECTORIES true "${dir}/*")
  foreach(child ${children})
    if(IS_DIRECTORY "${child}" AND EXISTS "${child}/CMakeLists.txt")
      add_subdirectory("${child}")
    endif()
  endforeach()
endfunction()
