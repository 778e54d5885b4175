# Boost.Asio for noclobber's own asio tests, benchmarks and examples (tests/asio, bench/asio,
# examples/asio each include this file; never exported to users).
#
#   Boost::headers      Boost 1.81 or newer, header-only (imported in the including directory:
#                       imported targets are directory-scoped, so every includer finds it again)
#   noclobber_asio_dev  Boost::headers + the compiler-specific fixes below; link it next to
#                       noclobber_dev (defined once, by the first includer)
find_package(Boost 1.81 CONFIG REQUIRED)

if(NOT TARGET noclobber_asio_dev)
  add_library(noclobber_asio_dev INTERFACE)
  target_link_libraries(noclobber_asio_dev INTERFACE Boost::headers)
  # Boost.Asio's fenced blocks use std::atomic_thread_fence, which g++ -fsanitize=thread warns
  # about (-Wtsan); the fences are redundant with the scheduler's mutex, so silence that warning.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOCLOBBER_SANITIZE MATCHES "thread")
    target_compile_options(noclobber_asio_dev INTERFACE -Wno-tsan)
  endif()
  # clang 14: UBSan's -fsanitize=function puts prologue data into coroutine functions split
  # across COMDAT sections and the assembler fails ("Cannot represent a difference across
  # sections"). Every other UBSan check stays on.
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang" AND NOCLOBBER_SANITIZE MATCHES "undefined")
    target_compile_options(noclobber_asio_dev INTERFACE -fno-sanitize=function)
  endif()
endif()
