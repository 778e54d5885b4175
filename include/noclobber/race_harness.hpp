// noclobber/race_harness.hpp — proves (or disproves) that a store + strategy loses no updates.
//
// Overview
// --------
// A lost update needs two writers to read the same version and both to write. Tests that merely
// start threads rarely hit that window; this harness forces it. It runs W writers × K operations
// against any conditional_writer store through a strategy (the naive blind read-modify-write, CAS
// with retry, lock + CAS, or your own), records a history of every read and write attempt with
// logical ticks, and checks it (Elle's rules, see race_harness/history.hpp):
//
//   noclobber::race_options<std::string, std::string> opt;
//   opt.writers = 16;
//   auto report = noclobber::run_race(store, my_strategy, opt);
//   REQUIRE(report.lost() == 0);          // or NOCLOBBER_REQUIRE_NO_LOST_UPDATES(report)
//   std::cout << report.to_text();        // counts, each loss, a trace, a replay line
//
// A strategy is any callable `strategy(race_store<S>& store, const Key& key, race_modify<V>& fn)`
// that performs one read-modify-write of `key` through `store`, computing each new value by
// calling `fn(current)` (current: std::optional<V>, or const V*). It is called concurrently from
// all writer threads. The harness's `race_store<S>` wraps your store with the same contract and
// records each call; between a writer's read and its write it hands control to the mode:
//
//   forced   every writer waits after its first read until all writers have read (a barrier with
//            a timeout). Naive writers then all write the version they read: W − 1 are lost. A
//            store or strategy that holds a lock across read and write makes the barrier time
//            out; the report says "writers serialised" instead of hanging.
//   explore  PCT (Burckhardt et al. 2010): exactly one writer runs between scheduling points (each
//            store call); priorities and depth − 1 priority change points are drawn from a seed.
//            Each iteration's seed derives from the master seed; a losing schedule is replayed
//            twice to check that it is deterministic, and the report carries its replay line.
//   stress   free-running threads, for stores that cannot be paused.
//
// Outside a harness run nothing is paid: your store is never modified or subclassed; the pause
// points live only in race_store.
//
// Stores: `run_race(store, …)` shares one thread-safe store object among the writers;
// `run_race_per_writer(make_store, …)` calls `make_store(i)` once per writer (one connection
// each: SQLite, PostgreSQL, Redis adapters are one-connection objects). make_store may return a
// Store&, a Store, or a std::unique_ptr<Store>.
//
// Thread safety and callbacks: one thread per writer. The strategy, the workload's functions and
// the store's functions run on those threads concurrently, and never under a harness lock (in
// explore mode only one writer runs at a time, but none holds a harness lock while it runs).
// Whatever a strategy throws is caught, counted as an op error and reported; the run goes on.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/report.hpp"
#include "noclobber/race_harness/strategies.hpp"
#include "noclobber/race_harness/workload.hpp"

namespace noclobber {

/// What to run. Defaults: 8 forced writers, one op each, on one key.
template <class Key, class Value>
struct race_options {
  unsigned writers = 8;         ///< W, 1 … 65535
  unsigned ops_per_writer = 1;  ///< K, ≥ 1
  race_mode mode = race_mode::forced;
  std::uint64_t seed = 1;                           ///< master seed: key choice, explore schedules
  unsigned iterations = 10;                         ///< explore: schedules to try
  unsigned depth = 2;                               ///< explore: PCT depth d (d − 1 change points), 1 … 8
  bool stop_at_first_failure = true;                ///< explore: stop at the first losing schedule
  std::optional<std::uint64_t> schedule;            ///< explore: run exactly this schedule seed (replay)
  std::chrono::milliseconds barrier_timeout{1000};  ///< forced: how long writers wait for each other
  std::chrono::milliseconds stall_timeout{200};     ///< explore: a writer silent this long is blocked
  /// The keys ops write; each op picks one (seeded), or `choose_key(writer, op, random)` picks an
  /// index. Empty: one key, "noclobber/race" (for keys constructible from a string).
  std::vector<Key> keys;
  std::function<std::size_t(std::uint32_t writer, std::uint32_t op, std::uint64_t random)> choose_key;
  /// How values are made unique; empty: append_workload() for std::string values.
  race_workload<Value> workload;
  std::string store_name = "store";
  std::string strategy_name = "strategy";
  /// Number of the first writer (runs in several processes give each a disjoint range).
  std::uint32_t first_writer = 1;

  /// Applies a report's replay line ("mode=explore writers=16 ops=1 seed=7 depth=2 schedule=…").
  /// Throws std::invalid_argument naming a token it does not understand.
  void apply_replay(std::string_view line) {
    std::size_t pos = 0;
    while (pos < line.size()) {
      while (pos < line.size() && line[pos] == ' ') ++pos;
      const std::size_t end = std::min(line.find(' ', pos), line.size());
      if (end == pos) break;
      const std::string_view token = line.substr(pos, end - pos);
      pos = end;
      const auto eq = token.find('=');
      if (eq == std::string_view::npos) {
        throw std::invalid_argument("noclobber: replay token '" + std::string(token) + "' is not key=value");
      }
      const std::string_view name = token.substr(0, eq);
      const std::string value(token.substr(eq + 1));
      // A number as strtoull reads it with base 0 (decimal, 0x hex, leading-0 octal), but only
      // digits: no sign (stoull wraps "-1") or leading space, and within the field's type.
      auto number = [&](std::uint64_t max) -> std::uint64_t {
        std::size_t used = 0;
        std::uint64_t n = 0;
        if (!value.empty() && value[0] >= '0' && value[0] <= '9') {
          try {
            n = std::stoull(value, &used, 0);
          } catch (const std::exception&) {
            used = 0;
          }
        }
        if (used != value.size() || value.empty() || n > max) {
          throw std::invalid_argument("noclobber: replay value '" + value + "' for '" + std::string(name) +
                                      "' is not a number from 0 to " + std::to_string(max));
        }
        return n;
      };
      constexpr std::uint64_t any = std::numeric_limits<std::uint64_t>::max();
      constexpr std::uint64_t narrow = std::numeric_limits<unsigned>::max();
      if (name == "mode")
        mode = parse_race_mode(value);
      else if (name == "writers")
        writers = static_cast<unsigned>(number(narrow));
      else if (name == "ops")
        ops_per_writer = static_cast<unsigned>(number(narrow));
      else if (name == "seed")
        seed = number(any);
      else if (name == "depth")
        depth = static_cast<unsigned>(number(narrow));
      else if (name == "schedule")
        schedule = number(any);
      else if (name == "iterations")
        iterations = static_cast<unsigned>(number(narrow));
      else
        throw std::invalid_argument("noclobber: unknown replay key '" + std::string(name) + "'");
    }
  }
};

template <class Store>
using race_options_for = race_options<store_key_t<Store>, store_value_t<Store>>;

template <class Store>
class race_store;
template <class Value>
class race_modify;

namespace detail {

inline std::uint64_t race_splitmix(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The seed of explore iteration i under master seed m.
inline std::uint64_t iteration_seed(std::uint64_t master, unsigned i) noexcept {
  std::uint64_t s = master ^ (0xd1b54a32d192ed03ULL * (static_cast<std::uint64_t>(i) + 1));
  return race_splitmix(s);
}

template <class K>
std::string printable_key(const K& k, std::size_t index) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>) {
    return std::string(std::string_view(k));
  } else if constexpr (std::is_arithmetic_v<K>) {
    return std::to_string(k);
  } else {
    return "#" + std::to_string(index);
  }
}

/// Different for every run in this process (and, with high probability, across processes).
inline std::uint32_t next_run_nonce() {
  static std::atomic<std::uint32_t> counter{static_cast<std::uint32_t>(std::random_device{}())};
  return counter.fetch_add(1) & 0xFFFFFu;
}

/// A barrier with a timeout. Once it times out it stays open ("broken").
class timed_barrier {
 public:
  explicit timed_barrier(unsigned expected) : expected_(expected) {}

  /// False when it timed out (now or earlier).
  bool arrive_and_wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (++arrived_ >= expected_) {
      cv_.notify_all();
      return !broken_;
    }
    if (!cv_.wait_for(lock, timeout, [&] { return arrived_ >= expected_ || broken_; })) broken_ = true;
    cv_.notify_all();
    return !broken_;
  }
  /// Counts as arrived without waiting (a writer whose first op never read).
  void arrive() {
    std::lock_guard lock(mutex_);
    if (++arrived_ >= expected_) cv_.notify_all();
  }
  bool broken() const {
    std::lock_guard lock(mutex_);
    return broken_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  unsigned expected_;
  unsigned arrived_ = 0;  // guarded by mutex_
  bool broken_ = false;   // guarded by mutex_
};

/// PCT scheduler: exactly one writer runs between scheduling points; the highest-priority writer
/// waiting at a point goes next. Initial priorities are a seeded permutation of depth … depth+n−1;
/// at the i-th change point (a step number, i from 1) the writer at that point drops to priority d − i.
/// A chosen writer that reaches no point within stall_timeout (blocked on a lock the harness cannot
/// see) is passed over until it does; such stalls make a run non-deterministic and are counted.
class pct_scheduler {
 public:
  pct_scheduler(unsigned writers, unsigned depth, std::uint64_t expected_steps, std::uint64_t seed,
                std::chrono::milliseconds stall_timeout)
      : priority_(writers),
        waiting_(writers, 0),
        done_(writers, 0),
        stalled_(writers, 0),
        stall_timeout_(stall_timeout) {
    std::mt19937_64 rng(seed);
    for (unsigned i = 0; i < writers; ++i) priority_[i] = static_cast<int>(depth + i);
    std::shuffle(priority_.begin(), priority_.end(), rng);
    std::uniform_int_distribution<std::uint64_t> step(1, std::max<std::uint64_t>(expected_steps, 1));
    for (unsigned i = 1; i < depth; ++i) change_points_.push_back(step(rng));
  }

  /// Called by writer w (0-based) before each store call and once at its start.
  void point(unsigned w) {
    std::unique_lock lock(mutex_);
    if (started_) {
      // Steps count from the first scheduled move, so arrival order never matters.
      ++steps_;
      for (std::size_t i = 0; i < change_points_.size(); ++i) {
        if (change_points_[i] == steps_) priority_[w] = static_cast<int>(change_points_.size() - i);
      }
    }
    waiting_[w] = 1;
    stalled_[w] = 0;
    if (!started_) {
      if (++arrived_ == priority_.size()) {
        started_ = true;
        pick_next();
      }
    } else if (current_ == w || current_ == none) {
      pick_next();
    }
    cv_.notify_all();
    while (current_ != w) {
      const std::uint64_t seen = steps_;
      if (cv_.wait_for(lock, stall_timeout_) == std::cv_status::timeout && started_ && steps_ == seen &&
          current_ != w && current_ != none && !waiting_[current_] && !done_[current_]) {
        stalled_[current_] = 1;
        ++stalls_;
        pick_next();
        cv_.notify_all();
      }
    }
    waiting_[w] = 0;
  }

  void finish(unsigned w) {
    std::lock_guard lock(mutex_);
    done_[w] = 1;
    if (started_) ++steps_;
    if (current_ == w || current_ == none) pick_next();
    cv_.notify_all();
  }

  std::size_t stalls() const {
    std::lock_guard lock(mutex_);
    return stalls_;
  }

 private:
  static constexpr unsigned none = ~0u;

  void pick_next() {  // requires mutex_
    unsigned best = none;
    for (unsigned i = 0; i < priority_.size(); ++i) {
      if (waiting_[i] && !done_[i] && !stalled_[i] && (best == none || priority_[i] > priority_[best]))
        best = i;
    }
    current_ = best;
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  // All guarded by mutex_.
  std::vector<int> priority_;
  std::vector<char> waiting_, done_, stalled_;
  std::vector<std::uint64_t> change_points_;
  std::uint64_t steps_ = 0;
  unsigned current_ = none;
  std::size_t arrived_ = 0;
  bool started_ = false;
  std::size_t stalls_ = 0;
  std::chrono::milliseconds stall_timeout_;
};

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
  std::mutex foreign_mutex;
  std::vector<std::vector<token_type>> foreign_tokens;  // guarded by foreign_mutex

  write_id foreign_id(std::uint32_t key, const token_type& token) {
    std::lock_guard lock(foreign_mutex);
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

  struct computed {
    write_id id;
    write_id read_from;
    std::uint32_t attempt;
  };

  race_run_state<Store>* run = nullptr;
  Store* store = nullptr;
  std::uint32_t writer = 0;  // from options.first_writer
  unsigned index = 0;        // 0-based thread index
  std::uint64_t sequence = 0;
  std::uint32_t op = 0;
  std::uint32_t key = 0;  // index of the op's key
  std::uint32_t attempt = 0;
  bool first_read_done = false;
  bool serialised = false;
  std::vector<computed> computed_this_op;
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
    if (run->scheduler) run->scheduler->point(index);
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
        st.reads.push_back({st.writer, st.op, *key, version, r.found(), invoke, complete});
      }
    } else {
      ++st.untracked;
    }
    if (st.run->barrier && !st.first_read_done) {
      st.first_read_done = true;
      if (!st.run->barrier->arrive_and_wait(st.run->options->barrier_timeout)) st.serialised = true;
    }
    return r;
  }

  write_result<token_type> write_if_match(const key_type& k, const token_type& t, const value_type& v) {
    return record(write_kind::write_if_match, k, v,
                  [&] { return store_traits<Store>::write_if_match(*state_->store, k, t, v); });
  }

  write_result<token_type> create_if_absent(const key_type& k, const value_type& v) {
    return record(write_kind::create_if_absent, k, v,
                  [&] { return store_traits<Store>::create_if_absent(*state_->store, k, v); });
  }

  write_result<token_type> overwrite(const key_type& k,
                                     const value_type& v) requires overwritable_store<Store> {
    return record(write_kind::overwrite, k, v,
                  [&] { return store_traits<Store>::overwrite(*state_->store, k, v); });
  }

 private:
  template <class Call>
  write_result<token_type> record(write_kind kind, const key_type& k, const value_type& v, Call&& call) {
    auto& st = *state_;
    st.before_call();
    const std::uint64_t invoke = st.run->tick.fetch_add(1);
    auto r = call();
    const std::uint64_t complete = st.run->tick.fetch_add(1);
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
    } else {
      // A value the harness did not compute (the strategy made its own): the checker flags it
      // when it applied, since its id names no recorded write.
      w.read_from = st.last_read[*key];
      w.attempt = st.attempt;
      if (w.written == initial_version) w.written = st.run->foreign_id(*key, r.token.value_or(token_type{}));
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
    st.computed_this_op.push_back({id, read_from, attempt});
    return v;
  }

  std::function<Value(const std::optional<Value>&)> make_;
};

namespace detail {

template <class T>
struct factory_store {
  using type = std::remove_cvref_t<T>;
};
template <class T>
struct factory_store<std::unique_ptr<T>> {
  using type = T;
};
template <class R>
using factory_store_t = typename factory_store<std::remove_cvref_t<R>>::type;

/// Holds what a store factory returned; built in place (guaranteed elision), so the store need
/// not be movable.
template <class T>
struct factory_holder {
  template <class F>
  factory_holder(F& f, unsigned i) : value(f(i)) {}
  T value;
};

template <class Store>
race_workload<store_value_t<Store>> resolve_workload(const race_options_for<Store>& o) {
  if (!o.workload.empty()) return o.workload;
  if constexpr (std::is_same_v<store_value_t<Store>, std::string>) {
    return append_workload();
  } else {
    throw std::invalid_argument(
        "noclobber: race_options.workload is empty; the harness needs next_value and id_of for this value "
        "type "
        "(append_workload() covers std::string)");
  }
}

template <class Store>
void validate(race_options_for<Store>& o) {
  if (o.writers == 0 || o.writers > 65535) {
    throw std::invalid_argument("noclobber: race_options.writers = " + std::to_string(o.writers) +
                                " (expected 1 … 65535)");
  }
  if (o.ops_per_writer == 0)
    throw std::invalid_argument("noclobber: race_options.ops_per_writer = 0 (expected ≥ 1)");
  if (o.mode == race_mode::explore && (o.depth == 0 || o.depth > 8)) {
    throw std::invalid_argument("noclobber: race_options.depth = " + std::to_string(o.depth) +
                                " (expected 1 … 8)");
  }
  if (o.iterations == 0) throw std::invalid_argument("noclobber: race_options.iterations = 0 (expected ≥ 1)");
  if (o.first_writer == 0 || o.first_writer + o.writers > max_race_writer) {
    throw std::invalid_argument("noclobber: race_options.first_writer = " + std::to_string(o.first_writer) +
                                " (expected 1 … 2^20 − 1 − writers)");
  }
  if (o.keys.empty()) {
    if constexpr (std::is_constructible_v<store_key_t<Store>, const char*>) {
      o.keys.push_back(store_key_t<Store>("noclobber/race"));
    } else {
      throw std::invalid_argument(
          "noclobber: race_options.keys is empty (give the keys the writers should race on)");
    }
  }
}

template <class Store>
read_result<store_value_t<Store>, store_token_t<Store>> settled_read(Store& s, const store_key_t<Store>& k) {
  auto r = store_traits<Store>::read(s, k);
  for (int i = 0; i < 50 && r.status == read_status::transient; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    r = store_traits<Store>::read(s, k);
  }
  return r;
}

/// A fingerprint of a run's interleaving, independent of ids carried over from earlier runs.
inline std::uint64_t schedule_signature(const race_history& h) {
  std::unordered_map<write_id, std::uint64_t, id_hash> name;
  for (const race_write& w : h.writes) {
    name.emplace(w.written, (std::uint64_t{w.writer} << 40) ^ (std::uint64_t{w.op} << 16) ^ w.attempt);
  }
  auto label = [&](write_id v, std::uint32_t key) -> std::uint64_t {
    if (key < h.initial_versions.size() && v == h.initial_versions[key]) return 0;
    auto it = name.find(v);
    return it == name.end() ? 1 : it->second;
  };
  struct ev {
    std::uint64_t tick, a, b;
  };
  std::vector<ev> events;
  events.reserve(h.writes.size() + h.reads.size());
  for (const race_write& w : h.writes) {
    events.push_back({w.invoke,
                      (std::uint64_t{w.writer} << 32) ^ (std::uint64_t{w.key} << 8) ^
                          static_cast<std::uint64_t>(w.outcome) ^ 0x100000,
                      label(w.read_from, w.key) * 31 + label(w.written, w.key)});
  }
  for (const race_read& r : h.reads) {
    events.push_back(
        {r.invoke, (std::uint64_t{r.writer} << 32) ^ (std::uint64_t{r.key} << 8), label(r.version, r.key)});
  }
  std::sort(events.begin(), events.end(), [](const ev& x, const ev& y) { return x.tick < y.tick; });
  std::uint64_t sig = 0xcbf29ce484222325ULL;
  for (const ev& e : events) {
    std::uint64_t s = sig ^ e.a;
    sig = race_splitmix(s);
    s = sig ^ e.b;
    sig = race_splitmix(s);
  }
  return sig;
}

struct run_outcome {
  race_history history;
  race_check check;
  std::size_t op_errors = 0;
  std::size_t retries = 0;
  std::size_t untracked = 0;
  std::string first_error;
  bool serialised = false;
  std::size_t stalls = 0;
  std::uint64_t signature = 0;
};

/// One run: W threads × K ops. `store_of(i)` gives writer i's store (0-based).
template <class Store, class StoreOf, class Strategy>
run_outcome run_once(StoreOf& store_of, Strategy& strategy, const race_options_for<Store>& o,
                     const race_workload<store_value_t<Store>>& workload,
                     std::optional<std::uint64_t> schedule) {
  race_run_state<Store> run;
  run.options = &o;
  run.workload = &workload;
  run.foreign_tokens.resize(o.keys.size());
  if (o.mode == race_mode::forced) run.barrier = std::make_unique<timed_barrier>(o.writers);
  if (o.mode == race_mode::explore) {
    const std::uint64_t expected_steps = std::uint64_t{o.writers} * o.ops_per_writer * 3 + o.writers;
    run.scheduler = std::make_unique<pct_scheduler>(o.writers, o.depth, expected_steps,
                                                    schedule.value_or(o.seed), o.stall_timeout);
  }

  run_outcome out;
  race_history& h = out.history;
  for (std::size_t i = 0; i < o.keys.size(); ++i) h.keys.push_back(printable_key(o.keys[i], i));
  // What each key holds before the run: chains stop there.
  Store& reader = store_of(0u);
  for (std::uint32_t k = 0; k < o.keys.size(); ++k) {
    auto r = settled_read(reader, o.keys[k]);
    h.initial_versions.push_back(r.failed() ? initial_version : run.version_of(k, r));
  }

  std::vector<race_writer_state<Store>> writers(o.writers);
  std::vector<std::size_t> errors(o.writers, 0);
  std::vector<std::string> first_errors(o.writers);
  for (unsigned i = 0; i < o.writers; ++i) {
    auto& w = writers[i];
    w.run = &run;
    w.store = &store_of(i);
    w.writer = o.first_writer + i;
    w.index = i;
    w.last_read.assign(o.keys.size(), initial_version);
    for (std::uint32_t k = 0; k < o.keys.size(); ++k) w.last_read[k] = h.initial_versions[k];
    w.writes.reserve(o.ops_per_writer * 2);
    w.reads.reserve(o.ops_per_writer * 2);
  }

  std::mutex start_mutex;
  std::condition_variable start_cv;
  unsigned ready = 0;  // guarded by start_mutex
  auto body = [&](unsigned i) {
    auto& w = writers[i];
    {
      // All threads exist before any starts, so the forced barrier measures store time only.
      std::unique_lock lock(start_mutex);
      if (++ready == o.writers) start_cv.notify_all();
      start_cv.wait(lock, [&] { return ready == o.writers; });
    }
    if (run.scheduler) run.scheduler->point(i);
    std::uint64_t key_rng = o.seed ^ (0x9e3779b97f4a7c15ULL * (std::uint64_t{w.writer} + 1));
    race_store<Store> view(w);
    race_modify<store_value_t<Store>> modify(w);
    for (std::uint32_t op = 0; op < o.ops_per_writer; ++op) {
      const std::uint64_t random = race_splitmix(key_rng);
      std::size_t key = 0;
      if (o.choose_key)
        key = o.choose_key(w.writer, op, random);
      else if (o.keys.size() > 1)
        key = static_cast<std::size_t>(random % o.keys.size());
      if (key >= o.keys.size()) key = key % o.keys.size();
      w.op = op;
      w.key = static_cast<std::uint32_t>(key);
      w.attempt = 0;
      w.computed_this_op.clear();
      try {
        std::invoke(strategy, view, std::as_const(o.keys[key]), modify);
      } catch (const std::exception& e) {
        if (errors[i]++ == 0)
          first_errors[i] = "W" + std::to_string(w.writer) + " op " + std::to_string(op) + ": " + e.what();
      } catch (...) {
        if (errors[i]++ == 0)
          first_errors[i] =
              "W" + std::to_string(w.writer) + " op " + std::to_string(op) + ": unknown exception";
      }
      if (run.barrier && !w.first_read_done) {
        // An op that never read must not hold the others at the forced window.
        w.first_read_done = true;
        run.barrier->arrive();
      }
    }
    if (run.scheduler) run.scheduler->finish(i);
  };
  {
    std::vector<std::jthread> threads;
    threads.reserve(o.writers);
    for (unsigned i = 0; i < o.writers; ++i) threads.emplace_back(body, i);
  }

  for (std::uint32_t k = 0; k < o.keys.size(); ++k) {
    auto r = settled_read(reader, o.keys[k]);
    h.final_versions.push_back(r.failed() ? initial_version : run.version_of(k, r));
    if (r.failed()) {
      out.first_error = "final read of key " + h.keys[k] + " failed: " + r.error.code + " " + r.error.message;
    }
  }
  for (unsigned i = 0; i < o.writers; ++i) {
    auto& w = writers[i];
    out.op_errors += errors[i];
    if (out.first_error.empty() && !first_errors[i].empty()) out.first_error = first_errors[i];
    out.serialised = out.serialised || w.serialised;
    out.untracked += w.untracked;
    // Retries: write attempts beyond the first of each op.
    std::uint32_t last_op = ~0u;
    for (const race_write& rw : w.writes) {
      if (rw.op == last_op) ++out.retries;
      last_op = rw.op;
    }
    h.writes.insert(h.writes.end(), w.writes.begin(), w.writes.end());
    h.reads.insert(h.reads.end(), w.reads.begin(), w.reads.end());
  }
  if (run.scheduler) {
    out.stalls = run.scheduler->stalls();
    out.signature = schedule_signature(h);
  }
  out.check = check_race_history(h);
  return out;
}

template <class Store, class StoreOf, class Strategy>
race_report run_all(StoreOf& store_of, Strategy& strategy, race_options_for<Store> o) {
  validate<Store>(o);
  const auto workload = resolve_workload<Store>(o);
  const auto started = std::chrono::steady_clock::now();

  race_report rep;
  rep.store = o.store_name;
  rep.strategy = o.strategy_name;
  rep.mode = o.mode;
  rep.writers = o.writers;
  rep.ops_per_writer = o.ops_per_writer;
  rep.depth = o.depth;
  rep.seed = o.seed;

  auto fill = [&](run_outcome&& r) {
    rep.operations = std::size_t{o.writers} * o.ops_per_writer;
    rep.op_errors = r.op_errors;
    rep.retries = r.retries;
    rep.untracked_calls = r.untracked;
    rep.first_error = std::move(r.first_error);
    rep.check = std::move(r.check);
    rep.writers_serialised = r.serialised;
    rep.stalls += r.stalls;
    rep.history = std::move(r.history);
    if (!rep.check.lost.empty()) rep.trace = loss_trace(rep.history, rep.check.lost.front());
  };

  if (o.mode != race_mode::explore) {
    fill(run_once<Store>(store_of, strategy, o, workload, std::nullopt));
  } else {
    const unsigned iterations = o.schedule ? 1 : o.iterations;
    std::optional<run_outcome> shown;
    std::uint64_t shown_seed = 0;
    rep.iterations = 0;
    for (unsigned i = 0; i < iterations; ++i) {
      const std::uint64_t s = o.schedule ? *o.schedule : iteration_seed(o.seed, i);
      auto r = run_once<Store>(store_of, strategy, o, workload, s);
      ++rep.iterations;
      rep.stalls += r.stalls;
      const bool losing = !r.check.ok();
      if (losing) ++rep.failing_iterations;
      if (!shown || (losing && shown->check.ok())) {
        shown = std::move(r);
        shown_seed = s;
      }
      if (losing && o.stop_at_first_failure) break;
    }
    if (rep.failing_iterations > 0) {
      // A losing schedule must replay the same way, or the replay line is worthless.
      bool same = true;
      for (int replay = 0; replay < 2; ++replay) {
        auto again = run_once<Store>(store_of, strategy, o, workload, shown_seed);
        same = same && again.signature == shown->signature &&
               again.check.lost.size() == shown->check.lost.size();
      }
      rep.replay_deterministic = same;
    }
    rep.schedule_seed = shown_seed;
    const std::size_t stalls = rep.stalls;
    fill(std::move(*shown));
    rep.stalls = stalls;
  }
  rep.elapsed =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  return rep;
}

}  // namespace detail

/// Runs the race with every writer sharing `store` (which must be safe to use from several
/// threads at once). `strategy(race_store<Store>&, const Key&, race_modify<Value>&)`.
/// Throws std::invalid_argument for options that make no sense; never throws for what the
/// store or the strategy do (that goes into the report).
template <class Store, class Strategy>
requires conditional_writer<Store>
[[nodiscard]] race_report run_race(Store& store, Strategy&& strategy,
                                   const race_options_for<Store>& options) {
  auto store_of = [&store](unsigned) -> Store& { return store; };
  return detail::run_all<Store>(store_of, strategy, options);
}

/// Runs the race with one store object per writer: `make_store(i)` for i = 0 … W−1, called once
/// each before the run, returning Store&, Store or std::unique_ptr<Store>. Writer 0's store also
/// reads the initial and final state. Use this for one-connection adapters.
template <class Factory, class Strategy,
          class Store = detail::factory_store_t<std::invoke_result_t<Factory&, unsigned>>>
requires conditional_writer<Store>
[[nodiscard]] race_report run_race_per_writer(Factory&& make_store, Strategy&& strategy,
                                              const race_options_for<Store>& options) {
  using result_t = std::invoke_result_t<Factory&, unsigned>;
  using holder = detail::factory_holder<std::remove_cvref_t<result_t>>;
  std::vector<std::unique_ptr<holder>> owned;
  std::vector<Store*> stores;
  const unsigned n = options.writers == 0 ? 1 : options.writers;
  for (unsigned i = 0; i < n; ++i) {
    if constexpr (std::is_lvalue_reference_v<result_t>) {
      stores.push_back(&make_store(i));
    } else {
      owned.push_back(std::make_unique<holder>(make_store, i));
      if constexpr (std::is_same_v<std::remove_cvref_t<result_t>, std::unique_ptr<Store>>) {
        if (!owned.back()->value)
          throw std::invalid_argument("noclobber: make_store(" + std::to_string(i) + ") returned null");
        stores.push_back(owned.back()->value.get());
      } else {
        stores.push_back(&owned.back()->value);
      }
    }
  }
  auto store_of = [&stores](unsigned i) -> Store& { return *stores[i]; };
  return detail::run_all<Store>(store_of, strategy, options);
}

}  // namespace noclobber
