// example: examples/read_modify_write.cpp
// read_modify_write's contract in one program: fn's three answers (a value, keep, abort) and
// what the result says about each, a write whose answer was lost, and a loop that gives up,
// run in virtual time through the env overload (docs/read_modify_write.md).
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <string>

#include <noclobber/memory_store.hpp>
#include <noclobber/read_modify_write.hpp>

using env_map = std::map<std::string, std::string>;
using namespace std::chrono_literals;

// One PATCH of a stack's environment: set `name`; keep the map as it is when it already holds
// that value; abort past 3 variables. fn only computes: it may run once per attempt.
auto set_variable(std::string name, std::string value) {
  return [name, value](const std::optional<env_map>& current) -> noclobber::update<env_map> {
    env_map next = current.value_or(env_map{});  // nullopt: the key is absent and will be created
    const auto it = next.find(name);
    if (it != next.end() && it->second == value) return noclobber::keep;
    if (it == next.end() && next.size() >= 3) return noclobber::abort("more than 3 variables");
    next[name] = value;
    return next;
  };
}

template <class T>
std::string text(T v) {
  return std::string(to_string(v));
}

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) std::printf("FAILED: %s\n", what), ++failures;
  };
  using noclobber::rmw_outcome;
  noclobber::memory_store<std::string, env_map> store;

  // A value: written. The key was absent, so it was created (create_if_absent).
  auto r = noclobber::read_modify_write(store, "stacks/web/env", set_variable("REGION", "eu-west-1"));
  std::printf("set REGION:        %s, created %d, %u attempt(s)\n", text(r.outcome).c_str(), r.created,
              r.attempts);
  expect(r.outcome == rmw_outcome::applied && r.created && r.value->at("REGION") == "eu-west-1", "applied");
  expect(r.token == store.peek("stacks/web/env")->second, "the new token is the stored version");

  // keep: nothing written. value and token are what fn saw; ok() is true.
  r = noclobber::read_modify_write(store, "stacks/web/env", set_variable("REGION", "eu-west-1"));
  std::printf("set REGION again:  %s, ok %d\n", text(r.outcome).c_str(), r.ok());
  expect(r.outcome == rmw_outcome::unchanged && r.ok() && r.value->size() == 1, "unchanged");

  // abort: nothing written; the reason comes back, ok() is false.
  for (const char* name : {"TIER", "OWNER", "COLOR"}) {
    r = noclobber::read_modify_write(store, "stacks/web/env", set_variable(name, "x"));
  }
  std::printf("set COLOR:         %s (%s)\n", text(r.outcome).c_str(), r.abort_reason.c_str());
  expect(r.outcome == rmw_outcome::aborted && !r.ok() && r.abort_reason == "more than 3 variables",
         "aborted");
  expect(store.peek("stacks/web/env")->first.size() == 3, "the aborted update wrote nothing");

  // A lost answer: this store applies every write but reports `indeterminate`. The loop re-reads
  // at once, finds the value it sent, and reports applied; no second write is sent.
  noclobber::fault_config lost_answers;
  lost_answers.indeterminate_applied = 1.0;
  noclobber::memory_store<std::string, env_map> flaky(lost_answers);
  r = noclobber::read_modify_write(flaky, "stacks/web/env", set_variable("REGION", "eu-west-1"));
  std::printf("lost answer:       %s, %u attempt(s), indeterminate %d\n", text(r.outcome).c_str(), r.attempts,
              r.indeterminate);
  expect(r.outcome == rmw_outcome::applied && r.attempts == 1 && flaky.stats().applied == 1, "recognised");

  // Giving up: somebody else always writes first. 3 attempts, backoff in virtual time (nothing
  // is slept for real): the result says why it stopped and what the store said last.
  noclobber::fault_config overtaken;
  overtaken.outside_writer = 1.0;
  noclobber::memory_store<std::string, env_map> busy(overtaken);
  (void)busy.create_if_absent("stacks/web/env", env_map{});
  noclobber::retry_policy policy;
  policy.max_attempts = 3;
  policy.backoff = noclobber::backoff_policy::full_jitter(10ms, 1s);
  noclobber::virtual_retry_env env(/*seed=*/7);
  r = noclobber::read_modify_write(busy, "stacks/web/env", set_variable("REGION", "eu-west-1"), policy, env);
  const auto slept = std::accumulate(env.sleeps().begin(), env.sleeps().end(), std::chrono::nanoseconds{0});
  std::printf("always overtaken:  %s after %u attempts (%s, last answer %s), slept %lld us of virtual time\n",
              text(r.outcome).c_str(), r.attempts, text(r.reason).c_str(), text(r.last_status).c_str(),
              static_cast<long long>(r.slept.count() / 1000));
  expect(r.outcome == rmw_outcome::gave_up && r.reason == noclobber::stop_reason::attempts_exhausted &&
             r.last_status == noclobber::write_status::conflict && r.attempts == 3 && !r.indeterminate,
         "gave up");
  expect(env.sleeps().size() == 2 && r.slept == slept, "two backoffs, measured on the env's clock");

  return failures == 0 ? 0 : 1;
}
