// example: examples/nemesis.cpp
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/nemesis.hpp>

#include <iostream>
#include <memory>
#include <string>

int main() {
  noclobber::memory_store<std::string, std::string> store;

  // One kind of fault: while it lasts, every write comes back indeterminate (applied all the same),
  // as after a timeout whose write landed. A real test uses the POSIX actions instead (kill_fault,
  // pause_fault, partition_fault in noclobber/race_harness/posix/).
  auto timeouts = std::make_shared<noclobber::function_fault>(
      "write-timeouts",
      [&store](std::uint64_t random) {
        noclobber::fault_config f;
        f.seed = random;
        f.indeterminate_applied = 1.0;
        store.set_faults(f);
        return std::string("every write times out after applying");
      },
      [&store] {
        store.set_faults({});
        return std::string("writes answer again");
      });

  noclobber::nemesis_options faults;
  faults.clock = noclobber::nemesis_clock::operations;  // gaps and holds count operations
  faults.seed = 7;
  faults.faults = 3;
  faults.gap = 40;
  faults.hold = 40;
  noclobber::nemesis nemesis({timeouts}, faults);

  noclobber::race_options<std::string, std::string> opt;
  opt.mode = noclobber::race_mode::stress;
  opt.writers = 8;
  opt.ops_per_writer = 50;
  opt.keys = {"a", "b"};
  noclobber::cas_strategy cas;
  auto strategy = [&](auto& view, const std::string& key, auto& fn) {
    cas(view, key, fn);
    nemesis.on_operation();
  };
  nemesis.start();
  auto report = noclobber::run_race(store, strategy, opt);
  nemesis.stop();  // heals whatever still runs; also done by the destructor

  std::cout << report.to_text() << nemesis.to_text();
  // Nothing lost, vanished or applied twice; every unknown outcome found out by reading back.
  return report.ok() && report.check.indeterminate_unresolved() == 0 ? 0 : 1;
}
