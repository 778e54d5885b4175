// Writers racing read_modify_write increments of one decimal counter, one store per thread, all
// started behind a barrier so that they overlap. Returns one text per update that did not apply
// ("" for none); a correct store and strategy end with the counter at stores.size() * increments.
#pragma once

#include <noclobber/read_modify_write.hpp>

#include <barrier>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace nc_test {

template <class Store>
std::vector<std::string> race_increments(std::vector<Store>& stores, const std::string& key, int increments) {
  std::barrier start(static_cast<std::ptrdiff_t>(stores.size()));
  std::vector<std::string> failures(stores.size());
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < stores.size(); ++w) {
    threads.emplace_back([&, w] {
      start.arrive_and_wait();
      for (int i = 0; i < increments; ++i) {
        noclobber::retry_policy policy;
        policy.max_attempts = 1000;  // contention, not failure: every conflict is retried
        policy.timeout = std::chrono::seconds(60);
        auto r = noclobber::read_modify_write(
            stores[w], key,
            [](const std::optional<std::string>& v) { return std::to_string(v ? std::stoi(*v) + 1 : 1); },
            policy);
        if (!r.ok()) failures[w] += r.last_error.code + " " + r.last_error.message + "; ";
      }
    });
  }
  for (auto& t : threads) t.join();
  return failures;
}

}  // namespace nc_test
