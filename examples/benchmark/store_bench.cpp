// example: examples/benchmark/store_bench.cpp
#include <benchmark/benchmark.h>
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/benchmark/store_bench.hpp>
#include <noclobber/memory_store.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  // The reference in-process store: every benchmark thread gets a reference to the same one.
  static noclobber::memory_store<std::string, std::string> memory;
  noclobber::register_store_benchmarks(
      "memory", []() -> auto& { return memory; });

  // Your adapter here: each benchmark thread opens its own connection to one database file.
  const std::string path =
      (std::filesystem::temp_directory_path() / ("store_bench_" + std::to_string(getpid()) + ".db")).string();
  noclobber::store_bench_options<noclobber::sqlite::store> options;
  options.policy.max_attempts = 20;  // the retry policy you would use in production
  noclobber::register_store_benchmarks(
      "sqlite", [&path] { return noclobber::sqlite::store(path); }, options);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return 0;
}
