// noclobber/race_harness/recorder.hpp — what records a race harness run: the store view and
// the value function handed to strategies, and the state they record into.
//
// Overview
// --------
//   race_store<S>        the harness's view of your store, handed to strategies: the same
//                        contract (read, write_if_match, create_if_absent, overwrite when your
//                        store has it). Each call is recorded with logical ticks (invoke,
//                        complete) as a race_read / race_write (race_harness/history.hpp), and is
//                        a scheduling point: before it the writer waits for its turn (explore);
//                        after each read it waits at the forced window until every writer still
//                        running has read (forced).
//   race_modify<V>       the value function a strategy calls with what it read: it asks the
//                        workload (race_harness/workload.hpp) for a new, unique value carrying
//                        its write id, and remembers which version that value was computed from.
//   race_run_state<S>    what all writers of one run share: options, workload, the tick counter,
//                        the run nonce, the barrier or scheduler, the versions seen that the
//                        harness did not write.
//   race_writer_state<S> one writer's records and where it is (op, key, attempt).
//
// A recorded write names the version it replaced by the computation that produced its value,
// not by the last read: a strategy may read several times per op. A write_if_match also names
// the version it was conditional on: the one this op read with the token it passed (the
// checker's evidence that a store forgot a write: race_harness/check_faults.hpp).
//
// Thread safety: one race_store / race_modify / race_writer_state per writer thread, touched
// only by that thread. race_run_state is shared: the tick is atomic, the foreign versions are
// guarded by an annotated mutex, the rest is immutable during the run. Your store's functions
// and the workload's run on the writer's thread with no harness lock held.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/options.hpp"
#include "noclobber/race_harness/scheduler.hpp"
#include "noclobber/race_harness/workload.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

template <class Store>
class race_store;
template <class Value>
class race_modify;

namespace detail {

/// Different for every run in this process (and, with high probability, across processes).
inline std::uint32_t next_run_nonce() {
  static std::atomic<std::uint32_t> counter{static_cast<std::uint32_t>(std::random_device{}())};
  return counter.fetch_add(1) & 0xFFFFFu;
}

/// State shared by all writers of one run.
template <class Store>
struct race_run_state {
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;

  const race_options_for<Store>* options = nullptr;
  const race_workload<value_type>* workload = nullptr;
  std::atomic<std::uint64_t> tick{0};
  std::uint32_t nonce = next_run_nonce();
  std::unique_ptr<timed_barrier> barrier;
  std::unique_ptr<pct_scheduler> scheduler;

  // Versions the harness did not write, told apart by token: key -> tokens seen.
  annotated_mutex foreign_mutex;
  std::vector<std::vector<token_type>> foreign_tokens NOCLOBBER_GUARDED_BY(foreign_mutex);

  write_id foreign_id(std::uint32_t key, const token_type& token) {
    annotated_lock lock(foreign_mutex);
    auto& seen = foreign_tokens[key];
    auto it = std::find(seen.begin(), seen.end(), token);
    const std::size_t index = static_cast<std::size_t>(it - seen.begin());
    if (it == seen.end()) seen.push_back(token);
    return foreign_version_bit | (static_cast<write_id>(key) << 32) | index;
  }

  /// The version a read result names.
  write_id version_of(std::uint32_t key, const read_result<value_type, token_type>& r) {
    if (!r.found()) return initial_version;
    const write_id id = workload->id_of(r.value);
    return id != initial_version ? id : foreign_id(key, r.token);
  }
};

/// One writer's recorder; touched only by its own thread during the run.
template <class Store>
struct race_writer_state {
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;

  struct computed {
    write_id id;
    write_id read_from;
    std::uint32_t attempt;
    bool found;  // the value function had a value (not absent)
  };
  struct token_read {  // a version this op read, with the token the store gave it
    std::uint32_t key;
    token_type token;
    write_id version;
  };

  race_run_state<Store>* run = nullptr;
  Store* store = nullptr;
  std::uint32_t writer = 0;  // from options.first_writer
  unsigned index = 0;        // 0-based thread index
  std::uint64_t sequence = 0;
  std::uint32_t op = 0;
  std::uint32_t key = 0;  // index of the op's key
  std::uint32_t attempt = 0;
  std::uint32_t call = 0;  // store calls so far in this op (the scheduler anchors change points)
  bool serialised = false;
  std::vector<computed> computed_this_op;
  std::vector<token_read> tokens_this_op;
  std::vector<write_id> last_read;  // per key
  std::vector<race_write> writes;
  std::vector<race_read> reads;
  std::size_t untracked = 0;

  std::optional<std::uint32_t> key_index(const key_type& k) const {
    const auto& keys = run->options->keys;
    if (keys[key] == k) return key;
    for (std::uint32_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == k) return i;
    }
    return std::nullopt;
  }

  void before_call() {
    if (run->scheduler) run->scheduler->point(index, op, call);
    ++call;
  }
};

}  // namespace detail

/// The harness's view of your store, handed to strategies: the same contract (read,
/// write_if_match, create_if_absent, and overwrite when your store has it), recording every call
/// and pausing between a writer's read and its write as the mode says. One per writer.
template <class Store>
class race_store {
 public:
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;

  explicit race_store(detail::race_writer_state<Store>& state) noexcept : state_(&state) {}

  /// The wrapped store itself: calls through it are neither recorded nor paused.
  [[nodiscard]] Store& inner() noexcept { return *state_->store; }
  /// This writer's number (from race_options::first_writer).
  [[nodiscard]] std::uint32_t writer() const noexcept { return state_->writer; }

  read_result<value_type, token_type> read(const key_type& k) {
    auto& st = *state_;
    st.before_call();
    const std::uint64_t invoke = st.run->tick.fetch_add(1);
    auto r = store_traits<Store>::read(*st.store, k);
    const std::uint64_t complete = st.run->tick.fetch_add(1);
    if (auto key = st.key_index(k)) {
      const write_id version = r.status == read_status::found || r.status == read_status::absent
                                   ? st.run->version_of(*key, r)
                                   : initial_version;
      if (!r.failed()) {
        st.last_read[*key] = version;
        if (r.found()) st.tokens_this_op.push_back({*key, r.token, version});
        st.reads.push_back({st.writer, st.op, *key, version, r.found(), invoke, complete});
      }
    } else {
      ++st.untracked;
    }
    // Forced: every read holds the window, not only the first (a retry's read, a later op's).
    if (st.run->barrier && !st.run->barrier->arrive_and_wait(st.run->options->barrier_timeout))
      st.serialised = true;
    return r;
  }

  write_result<token_type> write_if_match(const key_type& k, const token_type& t, const value_type& v) {
    return record(
        write_kind::write_if_match, k, v,
        [&] { return store_traits<Store>::write_if_match(*state_->store, k, t, v); }, &t);
  }

  write_result<token_type> create_if_absent(const key_type& k, const value_type& v) {
    return record(write_kind::create_if_absent, k, v,
                  [&] { return store_traits<Store>::create_if_absent(*state_->store, k, v); });
  }

  // clang-format off
  write_result<token_type> overwrite(const key_type& k, const value_type& v)
    requires overwritable_store<Store>
  {
    // clang-format on
    return record(write_kind::overwrite, k, v,
                  [&] { return store_traits<Store>::overwrite(*state_->store, k, v); });
  }

  /// A write the strategy makes through inner() its own way, such as one transaction that reads
  /// the key under the server's row lock, calls the value function and writes
  /// (postgres::update_under_row_lock). `call()` makes it and answers a write_result<token_type>;
  /// afterwards `written` must hold the value it wrote (the value function's last result), or a
  /// value without a write id when the value function did not run (nothing was written: nothing is
  /// recorded). The value function must run inside `call()`, on what the store returned there:
  /// that value is recorded as a read made within the call. The write is recorded as an
  /// unconditional one (write_kind::overwrite): what kept it safe is the server's lock, and the
  /// checker judges it by the chain it leaves.
  template <class Call>
  write_result<token_type> record_inner_write(const key_type& k, const value_type& written, Call&& call) {
    return record(write_kind::overwrite, k, written, std::forward<Call>(call), nullptr, true);
  }

 private:
  /// `expected`: the token a conditional update passed (null for the other calls).
  /// `computed_only`: `v` is read after the call, and nothing is recorded unless it then carries a
  /// write id (record_inner_write).
  template <class Call>
  write_result<token_type> record(write_kind kind, const key_type& k, const value_type& v, Call&& call,
                                  const token_type* expected = nullptr, bool computed_only = false) {
    auto& st = *state_;
    st.before_call();
    const std::uint64_t invoke = st.run->tick.fetch_add(1);
    auto r = call();
    const std::uint64_t complete = st.run->tick.fetch_add(1);
    if (computed_only && st.run->workload->id_of(v) == initial_version) return r;
    const auto key = st.key_index(k);
    if (!key) {
      ++st.untracked;
      return r;
    }
    race_write w;
    w.writer = st.writer;
    w.op = st.op;
    w.key = *key;
    w.kind = kind;
    w.invoke = invoke;
    w.complete = complete;
    w.written = st.run->workload->id_of(v);
    w.outcome = r.status == write_status::applied         ? op_outcome::ok
                : r.status == write_status::indeterminate ? op_outcome::unknown
                                                          : op_outcome::failed;
    // Which computation produced this value (normally the latest).
    auto it = std::find_if(st.computed_this_op.rbegin(), st.computed_this_op.rend(),
                           [&](const auto& c) { return c.id == w.written; });
    if (it != st.computed_this_op.rend()) {
      w.read_from = it->read_from;
      w.attempt = it->attempt;
      // record_inner_write: the value function ran inside the call on what the store held then,
      // a read within [invoke, complete]. Recorded as one, it is an observation for the checker:
      // when the store later forgets an acknowledged write (a failover), a locked transaction
      // that read past it is what shows the write vanished rather than lost to a stale read.
      if (computed_only)
        st.reads.push_back({st.writer, st.op, *key, it->read_from, it->found, invoke, complete});
    } else {
      // A value the harness did not compute (the strategy made its own): the checker flags it
      // when it applied, since its id names no recorded write.
      w.read_from = st.last_read[*key];
      w.attempt = st.attempt;
      if (w.written == initial_version) w.written = st.run->foreign_id(*key, r.token.value_or(token_type{}));
    }
    if (expected != nullptr) {  // the version this op read with that token, newest read first
      auto seen = std::find_if(st.tokens_this_op.rbegin(), st.tokens_this_op.rend(),
                               [&](const auto& t) { return t.key == *key && t.token == *expected; });
      if (seen != st.tokens_this_op.rend()) w.expected = seen->version;
    }
    st.writes.push_back(w);
    return r;
  }

  detail::race_writer_state<Store>* state_;
};

/// The value function a strategy calls with what it read; returns the new, unique value.
/// Accepts std::optional<V> (empty = absent), const V* (null = absent) or const V&.
template <class Value>
class race_modify {
 public:
  template <class Store>
  explicit race_modify(detail::race_writer_state<Store>& st)
      : make_([&st](const std::optional<Value>& current) { return compute(st, current); }) {}

  Value operator()(const std::optional<Value>& current) { return make_(current); }
  Value operator()(const Value* current) {
    return make_(current ? std::optional<Value>(*current) : std::optional<Value>());
  }
  Value operator()(const Value& current) { return make_(std::optional<Value>(current)); }

 private:
  template <class Store>
  static Value compute(detail::race_writer_state<Store>& st, const std::optional<Value>& current) {
    const auto& workload = *st.run->workload;
    if (st.sequence >= max_race_sequence) {
      throw std::length_error("noclobber: more than 2^23 values computed by one writer in one run");
    }
    const write_id id = make_write_id(st.writer, st.run->nonce, ++st.sequence);
    write_id read_from = initial_version;
    if (current) {
      read_from = workload.id_of(*current);
      if (read_from == initial_version) read_from = st.last_read[st.key];  // a foreign version
    }
    const std::uint32_t attempt = ++st.attempt;
    Value v = workload.next_value(current, write_tag{st.writer, st.op, attempt, id});
    if (workload.id_of(v) != id) {
      throw std::logic_error(
          "noclobber: race_workload::id_of(next_value(current, tag)) must return tag.id (" +
          std::to_string(id) + "); the value does not carry its write id");
    }
    st.computed_this_op.push_back({id, read_from, attempt, current.has_value()});
    return v;
  }

  std::function<Value(const std::optional<Value>&)> make_;
};

}  // namespace noclobber
