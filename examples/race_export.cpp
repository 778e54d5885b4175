// example: examples/race_export.cpp
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/export.hpp>  // not in race_harness.hpp: include it to use it

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

int main() {
  noclobber::memory_store<std::string, std::string> store;
  noclobber::race_options<std::string, std::string> opt;
  opt.writers = 2;
  const auto report = noclobber::run_race(store, noclobber::naive_strategy{}, opt);  // W1 or W2 lost

  // For Jepsen's Elle (rw-register) and for Porcupine (with the model in docs/race_harness.md).
  std::ofstream("race.edn") << noclobber::to_elle_edn(report.history);
  std::ofstream("race.json") << noclobber::to_porcupine_json(report.history);
  std::cout << noclobber::to_elle_edn(report.history);

  // A history from elsewhere, checked by the harness's checker: T1 and T2 both read nil.
  const auto h = noclobber::from_elle_edn(R"([
    {:type :invoke, :f :txn, :value [[:r "x" nil] [:w "x" 1]], :process 1, :time 0}
    {:type :invoke, :f :txn, :value [[:r "x" nil] [:w "x" 2]], :process 2, :time 1}
    {:type :ok, :f :txn, :value [[:r "x" nil] [:w "x" 1]], :process 1, :time 2}
    {:type :ok, :f :txn, :value [[:r "x" nil] [:w "x" 2]], :process 2, :time 3}
    {:type :ok, :f :txn, :value [[:r "x" 2]], :process 0, :time 4}])");
  const auto check = noclobber::check_race_history(h);
  std::cout << "lost: " << check.lost.size() << " (W" << check.lost.at(0).lost.writer << ", overwritten by W"
            << check.lost.at(0).overwritten_by.writer << ")\n";  // lost: 1 (W1, overwritten by W2)

  // (noclobber/json/porcupine.hpp reads Porcupine's JSON back the same way: from_porcupine_json.)
  const auto back =
      noclobber::check_race_history(noclobber::from_elle_edn(noclobber::to_elle_edn(report.history)));
  std::remove("race.edn");
  std::remove("race.json");
  return check.lost.size() == 1 && back.lost.size() == report.lost() ? 0 : 1;
}
