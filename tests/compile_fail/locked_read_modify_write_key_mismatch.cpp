// Compile-fail snippet (tests/compile_fail/CMakeLists.txt): locked_read_modify_write with a lock
// map keyed by int in front of a store keyed by std::string. Expected: one static_assert naming
// both types. locked_read_modify_write_key_fits.cpp (the control) defines
// NOCLOBBER_COMPILE_FAIL_CONTROL: the lock map fits and the same code compiles.
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/memory_store.hpp>

#include <optional>
#include <string>

#ifdef NOCLOBBER_COMPILE_FAIL_CONTROL
using lock_key = std::string;
#else
using lock_key = int;
#endif

int main() {
  noclobber::memory_store<std::string, std::string> store;
  noclobber::keyed_mutex_map<lock_key> locks;
  auto r = noclobber::locked_read_modify_write(
      locks, store, std::string("k"),
      [](const std::optional<std::string>& v) -> noclobber::update<std::string> {
        return v.value_or("") + "!";
      });
  return r.ok() ? 0 : 1;
}
