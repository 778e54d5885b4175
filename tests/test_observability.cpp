// Tests for the retry loop's observability: the hooks (on_attempt, on_retry, on_success,
// on_give_up) and their order, the per-call statistics in retry_stats, the metrics sink fed by
// with_metrics (noclobber/metrics.hpp, memory_metrics.hpp) and the text of outcomes and results
// (noclobber/ostream.hpp).
//
// The forced runs script the store's answers call by call (a conflict made by an outside write,
// a transient error, an indeterminate write that did not land, one that did), so every count is
// known in advance. The race runs real threads behind a latch, with a barrier inside the first
// call of fn so that every writer reads the same version: at least threads - 1 conflicts happen
// every run, whatever the scheduling.
#include <catch2/catch.hpp>

#include <barrier>
#include <chrono>
#include <cstdint>
#include <deque>
#include <latch>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "noclobber/cas_retry.hpp"
#include "noclobber/memory_metrics.hpp"
#include "noclobber/memory_store.hpp"
#include "noclobber/metrics.hpp"
#include "noclobber/ostream.hpp"
#include "noclobber/read_modify_write.hpp"
#include "noclobber/retry_env.hpp"

namespace nc = noclobber;
using namespace std::chrono_literals;
using nc::write_status;

namespace {

using inner_store = nc::memory_store<std::string, int>;

enum class scripted { pass, outside_write, transient, indeterminate_lost, indeterminate_applied };

// A memory_store whose write_if_match answers follow a script (then pass through).
class scripted_store {
 public:
  using key_type = std::string;
  using value_type = int;
  using token_type = std::uint64_t;
  using wresult = nc::write_result<token_type>;

  explicit scripted_store(std::deque<scripted> script) : script_(std::move(script)) {}

  nc::read_result<int, token_type> read(const std::string& key) { return inner.read(key); }
  wresult create_if_absent(const std::string& key, const int& value) {
    return inner.create_if_absent(key, value);
  }
  wresult write_if_match(const std::string& key, const token_type& token, const int& value) {
    ++writes;
    const scripted step = script_.empty() ? scripted::pass : script_.front();
    if (!script_.empty()) script_.pop_front();
    switch (step) {
      case scripted::pass:
        return inner.write_if_match(key, token, value);
      case scripted::outside_write:
        (void)inner.overwrite(key, 100);
        return inner.write_if_match(key, token, value);
      case scripted::transient:
        return wresult::make_failed(write_status::transient, {"BUSY", "try again"});
      case scripted::indeterminate_lost:
        return wresult::make_failed(write_status::indeterminate, {"timeout", "no answer"});
      case scripted::indeterminate_applied:
        (void)inner.write_if_match(key, token, value);
        return wresult::make_failed(write_status::indeterminate, {"timeout", "no answer"});
    }
    return wresult::make_failed(write_status::permanent);
  }

  inner_store inner;
  unsigned writes = 0;

 private:
  std::deque<scripted> script_;
};

// Every hook appends one line to `log`.
nc::retry_policy logging_policy(std::vector<std::string>& log) {
  nc::retry_policy p;
  p.backoff = nc::backoff_policy::full_jitter(1ms, 8ms);
  p.max_attempts = 10;
  p.on_attempt = [&log](const nc::attempt_event& e) {
    log.push_back("attempt " + std::to_string(e.attempt) + ' ' + std::string(to_string(e.status)) +
                  (e.decided ? " decided" : "") + (e.resolved_indeterminate ? " resolved" : ""));
  };
  p.on_retry = [&log](const nc::retry_event& e) {
    log.push_back("retry " + std::to_string(e.attempt) + ' ' + std::string(to_string(e.status)) +
                  (e.reread ? " reread" : " resend"));
  };
  p.on_success = [&log](const nc::success_event& e) {
    log.push_back("success " + std::string(to_string(e.counts.reason)) + ' ' +
                  std::to_string(e.counts.attempts));
  };
  p.on_give_up = [&log](const nc::give_up_event& e) {
    log.push_back("give_up " + std::string(to_string(e.reason)) + ' ' + std::to_string(e.counts.attempts) +
                  " conflicts " + std::to_string(e.counts.conflicts));
  };
  return p;
}

std::chrono::nanoseconds total(const std::vector<std::chrono::nanoseconds>& sleeps) {
  return std::accumulate(sleeps.begin(), sleeps.end(), std::chrono::nanoseconds::zero());
}

const auto increment = [](const std::optional<int>& v) { return v.value_or(0) + 1; };

}  // namespace

TEST_CASE(
    "hooks fire in order and the statistics count a forced conflict, a transient error and two "
    "unknown outcomes",
    "[observability]") {
  scripted_store store({scripted::outside_write, scripted::transient, scripted::indeterminate_lost,
                        scripted::indeterminate_applied});
  REQUIRE(store.inner.create_if_absent("k", 0).ok());
  std::vector<std::string> log;
  const nc::retry_policy policy = logging_policy(log);
  nc::virtual_retry_env env(7);

  const auto r = nc::read_modify_write(store, "k", increment, policy, env);

  REQUIRE(r.outcome == nc::rmw_outcome::applied);
  CHECK(r.value == 101);  // fn saw the outside writer's 100
  CHECK(store.inner.read("k").value == 101);
  CHECK(log == std::vector<std::string>{
                   "attempt 1 conflict", "retry 1 conflict reread",    // the outside write moved the key
                   "attempt 2 transient", "retry 2 transient resend",  // BUSY: the same request again
                   "attempt 3 transient resolved",  // indeterminate, the key untouched: not landed
                   "retry 3 transient resend",
                   "attempt 4 applied resolved",  // indeterminate, the read shows our value: landed
                   "success applied 4"});
  CHECK(r.attempts == 4);
  CHECK(store.writes == 4);
  CHECK(r.conflicts == 1);
  CHECK(r.transient_errors == 1);  // the resend after "not landed" is no store error
  CHECK(r.indeterminate_resolved == 2);
  CHECK(env.sleeps().size() == 3);
  CHECK(r.slept == total(env.sleeps()));
  CHECK(r.reason == nc::stop_reason::applied);
}

TEST_CASE("a loop that gives up calls on_give_up last, with every counter, and never on_success",
          "[observability]") {
  std::vector<std::string> log;
  nc::retry_policy policy = logging_policy(log);
  policy.max_attempts = 3;
  nc::virtual_retry_env env(1);
  const auto r = nc::cas_retry(
      policy, [] { return write_status::conflict; }, env);
  CHECK(r.reason == nc::stop_reason::attempts_exhausted);
  CHECK(log == std::vector<std::string>{"attempt 1 conflict", "retry 1 conflict reread", "attempt 2 conflict",
                                        "retry 2 conflict reread", "attempt 3 conflict",
                                        "give_up attempts_exhausted 3 conflicts 3"});
  CHECK(r.conflicts == 3);
  CHECK(r.transient_errors == 0);
  CHECK(r.slept == total(env.sleeps()));
}

TEST_CASE("an unknown outcome that cannot be settled is not counted as resolved", "[observability]") {
  // indeterminate, and somebody else wrote before the resolving read: unknowable.
  struct racing_store : scripted_store {
    using scripted_store::scripted_store;
    wresult write_if_match(const std::string& key, const token_type& token, const int& value) {
      ++writes;
      (void)inner.write_if_match(key, token, value);
      (void)inner.overwrite(key, 7);
      return wresult::make_failed(write_status::indeterminate, {"timeout", "no answer"});
    }
  };
  racing_store store(std::deque<scripted>{});
  REQUIRE(store.inner.create_if_absent("k", 0).ok());
  std::vector<std::string> log;
  const nc::retry_policy policy = logging_policy(log);
  nc::virtual_retry_env env(1);
  const auto r = nc::read_modify_write(store, "k", increment, policy, env);
  CHECK(r.outcome == nc::rmw_outcome::gave_up);
  CHECK(r.indeterminate);
  CHECK(r.reason == nc::stop_reason::indeterminate);
  CHECK(r.indeterminate_resolved == 0);
  CHECK(log == std::vector<std::string>{"attempt 1 indeterminate", "give_up indeterminate 1 conflicts 0"});
}

TEST_CASE("a decided attempt reports decided through on_attempt and ends in on_success", "[observability]") {
  std::vector<std::string> log;
  const nc::retry_policy policy = logging_policy(log);
  inner_store store;
  REQUIRE(store.create_if_absent("k", 5).ok());
  const auto r = nc::read_modify_write(
      store, "k", [](const std::optional<int>&) { return nc::keep; }, policy);
  CHECK(r.outcome == nc::rmw_outcome::unchanged);
  CHECK(log == std::vector<std::string>{"attempt 1 applied decided", "success decided 1"});
}

TEST_CASE("a first-try success calls on_attempt and on_success once each", "[observability]") {
  std::vector<std::string> log;
  const nc::retry_policy policy = logging_policy(log);
  inner_store store;
  const auto r = nc::read_modify_write(store, "k", increment, policy);
  CHECK(r.created);
  CHECK(log == std::vector<std::string>{"attempt 1 applied", "success applied 1"});
  CHECK(r.conflicts == 0);
  CHECK(r.transient_errors == 0);
  CHECK(r.slept == 0ns);
}

TEST_CASE("with_metrics keeps the policy's own hooks and feeds the sink what the loops did",
          "[observability]") {
  scripted_store store({scripted::outside_write, scripted::transient, scripted::indeterminate_lost,
                        scripted::indeterminate_applied});
  REQUIRE(store.inner.create_if_absent("k", 0).ok());
  std::vector<std::string> log;
  nc::memory_metrics sink;
  const nc::retry_policy policy = nc::with_metrics(logging_policy(log), sink, "counter.add");
  nc::virtual_retry_env env(3);
  const auto r = nc::read_modify_write(store, "k", increment, policy, env);
  REQUIRE(r.ok());
  CHECK(log.size() == 8);  // the policy's own hooks still ran

  namespace in = nc::instruments;
  const nc::metric_attribute op{nc::metric_keys::operation, "counter.add"};
  CHECK(sink.counter(in::attempts) == 4);
  CHECK(sink.counter(in::attempts, {{nc::metric_keys::status, "conflict"}, op}) == 1);
  CHECK(sink.counter(in::attempts, {{nc::metric_keys::status, "transient"}}) == 2);
  CHECK(sink.counter(in::attempts, {{nc::metric_keys::status, "applied"}}) == 1);
  CHECK(sink.counter(in::retries) == 3);
  CHECK(sink.counter(in::indeterminate_resolved, {op}) == 2);
  CHECK(sink.counter(in::calls, {{nc::metric_keys::reason, "applied"}}) == 1);
  const auto attempts = sink.histogram(in::call_attempts, {op});
  CHECK(attempts.count == 1);
  CHECK(attempts.sum == 4.0);
  const auto backoff = sink.histogram(in::call_backoff);
  CHECK(backoff.count == 1);
  CHECK(backoff.sum == Approx(std::chrono::duration<double>(r.slept).count()));
  CHECK(
      sink.text().find("noclobber.attempts{noclobber.operation=counter.add,noclobber.status=conflict} 1\n") !=
      std::string::npos);
}

TEST_CASE("metrics of a real race: threads behind a latch, every writer reads the same first version",
          "[observability][concurrency]") {
  constexpr int threads = 4;
  constexpr int updates = 200;
  inner_store store;
  nc::memory_metrics sink;
  nc::retry_policy base;
  base.backoff = nc::backoff_policy::full_jitter(1us, 50us);
  base.max_attempts = 1'000'000;
  const nc::retry_policy policy = nc::with_metrics(base, sink, "race");
  std::latch start(threads);
  std::barrier first_read(threads);  // inside fn's first call: everyone has read the same version
  std::vector<nc::retry_counts> seen(threads * updates);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      bool first = true;
      start.arrive_and_wait();
      for (int u = 0; u < updates; ++u) {
        const auto r = nc::read_modify_write(
            store, "hits",
            [&](const std::optional<int>& v) {
              if (first) {
                first = false;
                first_read.arrive_and_wait();
              }
              return v.value_or(0) + 1;
            },
            policy);
        seen[static_cast<std::size_t>(t * updates + u)] = r;
      }
    });
  }
  for (auto& th : pool) th.join();

  CHECK(store.read("hits").value == threads * updates);  // no update lost
  std::uint64_t attempts = 0, conflicts = 0;
  for (const auto& c : seen) {
    REQUIRE(c.reason == nc::stop_reason::applied);
    attempts += c.attempts;
    conflicts += c.conflicts;
  }
  namespace in = nc::instruments;
  CHECK(conflicts >= threads - 1);  // forced by the barrier: one of the first writes applies
  CHECK(sink.counter(in::attempts) == attempts);
  CHECK(sink.counter(in::attempts, {{nc::metric_keys::status, "conflict"}}) +
            sink.counter(in::attempts, {{nc::metric_keys::status, "exists"}}) ==
        conflicts);
  CHECK(sink.counter(in::attempts, {{nc::metric_keys::status, "applied"}}) == threads * updates);
  CHECK(sink.counter(in::calls, {{nc::metric_keys::reason, "applied"}}) == threads * updates);
  CHECK(sink.counter(in::retries) == attempts - threads * updates);
  CHECK(sink.histogram(in::call_attempts).sum == static_cast<double>(attempts));
}

TEST_CASE("outcomes and results as text", "[observability][format]") {
  using wr = nc::write_result<std::uint64_t>;
  CHECK(nc::to_text(write_status::transient_restart) == "transient_restart");
  CHECK(nc::to_text(nc::stop_reason::budget_exhausted) == "budget_exhausted");
  CHECK(nc::to_text(nc::store_error{"SQLITE_BUSY", "database is locked"}) ==
        "SQLITE_BUSY: database is locked");
  CHECK(nc::to_text(nc::store_error{"", "only words"}) == "only words");
  CHECK(nc::to_text(wr::make_applied(7)) == "applied (token 7)");
  CHECK(nc::to_text(wr::make_failed(write_status::transient, {"503", "busy"})) == "transient (503: busy)");
  CHECK(nc::to_text(nc::read_result<int, std::uint64_t>::make_found(41, 3)) == "found 41 (token 3)");
  CHECK(nc::to_text(nc::read_result<int, std::uint64_t>::make_absent()) == "absent");

  nc::retry_counts c;
  c.reason = nc::stop_reason::applied;
  c.attempts = 1;
  CHECK(nc::to_text(c) == "applied after 1 attempt");
  c.attempts = 4;
  c.conflicts = 1;
  c.transient_errors = 2;
  c.indeterminate_resolved = 1;
  c.slept = 1500us;
  CHECK(nc::to_text(c) ==
        "applied after 4 attempts (1 conflict, 2 transient errors, 1 unknown outcome resolved; slept 1.5ms)");

  nc::rmw_result<int, std::uint64_t> r;
  r.outcome = nc::rmw_outcome::gave_up;
  r.reason = nc::stop_reason::indeterminate;
  r.indeterminate = true;
  r.attempts = 2;
  r.conflicts = 1;
  r.last_status = write_status::indeterminate;
  r.last_error = {"timeout", "no answer"};
  CHECK(
      nc::to_text(r) ==
      "gave up: our write's outcome is unknown: it may or may not be stored; after 2 attempts (1 conflict), "
      "last status indeterminate (timeout: no answer)");

  std::ostringstream os;
  os << write_status::conflict << " | " << wr::make_conflict() << " | " << nc::stop_reason::deadline;
  CHECK(os.str() == "conflict | conflict | deadline");
}

TEST_CASE("operator<< prints a read_modify_write result as it happened", "[observability][format]") {
  scripted_store store({scripted::outside_write});
  REQUIRE(store.inner.create_if_absent("k", 0).ok());
  nc::retry_policy policy;
  policy.backoff = nc::backoff_policy::immediate();
  nc::virtual_retry_env env;
  const auto r = nc::read_modify_write(store, "k", increment, policy, env);
  std::ostringstream os;
  os << r;
  CHECK(os.str() == "applied 101 (token " + std::to_string(*r.token) + ") after 2 attempts (1 conflict)");
}
