// The program every consumer test builds (find_package, add_subdirectory, FetchContent, the
// single header): several threads increment one counter in noclobber's memory_store through a
// conditional write, and the program fails unless no update was lost.
#include <noclobber/noclobber.hpp>

#if defined(NOCLOBBER_EXPECT_SINGLE_HEADER) && __has_include(<noclobber/outcome.hpp>)
#error "include/ is on the include path: this build must see only single_include/"
#endif

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

int main() {
  constexpr int threads = 4;
  constexpr int increments = 2000;
  noclobber::memory_store<std::string, long> store;
  if (!store.create_if_absent("hits", 0).ok()) return 1;

  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&store] {
      for (int i = 0; i < increments; ++i) {
        for (;;) {  // read, modify, write if nobody wrote in between; else re-read
          auto r = store.read("hits");
          if (!r.found()) std::abort();
          if (store.write_if_match("hits", r.token, r.value + 1).ok()) break;
        }
      }
    });
  }
  for (auto& w : workers) w.join();

  const auto final_value = store.read("hits").value;
  std::printf("noclobber %s: %ld of %d increments kept\n", std::string(noclobber::version.text).c_str(),
              final_value, threads * increments);
  return final_value == threads * increments ? 0 : 1;
}
