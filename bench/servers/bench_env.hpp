// Shared by the server benchmarks: the server's address from the environment (the benchmark
// aborts with a clear message when it is missing) and a unique key per run.
#pragma once

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace nc_bench {

inline std::string server_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    std::fprintf(stderr, "%s is not set: run through scripts/bench_servers.sh BUILD_DIR\n", name);
    std::exit(2);
  }
  return v;
}

inline std::string unique(const std::string& prefix) {
  static int n = 0;
  return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
}

}  // namespace nc_bench
