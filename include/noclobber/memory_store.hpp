// noclobber/memory_store.hpp — the reference in-memory store, with fault injection.
//
// Overview
// --------
// `memory_store<Key, Value>` is a thread-safe, versioned key-value map that fulfils the whole
// store contract of conditional_writer.hpp: read, write_if_match, create_if_absent,
// erase_if_match, patch_if_match and the unconditional overwrite. Its token is a
// `std::uint64_t` version drawn from one store-wide counter, so every applied write gets a fresh
// version that is never reused, not even after the key is erased and created again (no ABA).
// Token 0 is never issued.
//
// It exists to serve tests, docs, benchmarks and the race harness, so it can misbehave on
// purpose, the way real stores do. A `fault_config` (seeded) injects:
//
//   latency                  a random delay in [latency_min, latency_max] before every call
//                            (slept outside every lock);
//   transient                a write that does nothing and reports `transient`;
//   transient_restart        a write that does nothing and reports `transient_restart`;
//   indeterminate_applied    a write that takes effect but reports `indeterminate`;
//   indeterminate_lost       a write that does nothing but reports `indeterminate`;
//   outside_writer           just before a conditional write on an existing key, somebody else
//                            writes it (a fresh version; the value changed by the outside-writer
//                            callback, or left as is), so the request sees a real conflict;
//   read_transient           a read that reports `transient`;
//   permanent                a write that does nothing and reports `permanent`.
//
// Each fault is decided by one draw from a counter-based generator seeded by `seed`, so a run
// with the same sequence of calls sees the same faults. `overwrite` (the blind write of the
// naive negative control) gets latency only.
//
//     noclobber::memory_store<std::string, int> store;
//     auto created = store.create_if_absent("hits", 1);           // applied, token = version
//     auto r = store.read("hits");                                 // found, 1, token
//     auto w = store.write_if_match("hits", r.token, r.value + 1); // applied (or conflict)
//
// Thread safety: every member function may be called from any number of threads at once. Keys
// are spread over 16 shards, each guarded by its own mutex; an operation holds exactly one shard
// mutex and no other lock. User code that runs under a shard mutex: the copy, move and equality
// of Key and Value, Hash and KeyEqual, the `patch_type` callable given to patch_if_match, and
// the outside-writer callback. They must not call back into the same store. Whatever they
// throw, the key keeps its previous value and version and the mutex is released.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "noclobber/duration.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

/// Which faults a memory_store injects, and how often. Probabilities are per call and must lie
/// in [0, 1]; the write-side ones (transient, transient_restart, indeterminate_lost, permanent,
/// indeterminate_applied) are drawn from one roll, so their sum must not exceed 1.
struct fault_config {
  std::uint64_t seed = 0;
  // Any duration converts without overflow (hours::max() is nanoseconds::max(), not negative).
  saturating_ns latency_min = std::chrono::nanoseconds(0);
  saturating_ns latency_max = std::chrono::nanoseconds(0);
  double transient = 0.0;
  double transient_restart = 0.0;
  double indeterminate_applied = 0.0;
  double indeterminate_lost = 0.0;
  double permanent = 0.0;
  double outside_writer = 0.0;
  double read_transient = 0.0;

  /// Throws std::invalid_argument naming the first bad field.
  void validate() const {
    auto check_probability = [](double p, const char* name) {
      if (!(p >= 0.0 && p <= 1.0)) {
        throw std::invalid_argument(std::string("noclobber::fault_config: ") + name + " = " +
                                    std::to_string(p) + " is not a probability in [0, 1]");
      }
    };
    check_probability(transient, "transient");
    check_probability(transient_restart, "transient_restart");
    check_probability(indeterminate_applied, "indeterminate_applied");
    check_probability(indeterminate_lost, "indeterminate_lost");
    check_probability(permanent, "permanent");
    check_probability(outside_writer, "outside_writer");
    check_probability(read_transient, "read_transient");
    const double write_faults =
        transient + transient_restart + indeterminate_applied + indeterminate_lost + permanent;
    if (write_faults > 1.0 + 1e-12) {
      throw std::invalid_argument(
          "noclobber::fault_config: transient + transient_restart + indeterminate_applied + "
          "indeterminate_lost + permanent = " +
          std::to_string(write_faults) + " exceeds 1");
    }
    if (latency_min.count() < 0) {
      throw std::invalid_argument(
          "noclobber::fault_config: latency_min = " + std::to_string(latency_min.count()) + "ns is negative");
    }
    if (latency_max < latency_min) {
      throw std::invalid_argument(
          "noclobber::fault_config: latency_max = " + std::to_string(latency_max.count()) +
          "ns is below latency_min = " + std::to_string(latency_min.count()) + "ns");
    }
  }
};

/// What a memory_store has done and injected so far (relaxed counters; a consistent total only
/// once the callers have stopped).
struct memory_store_stats {
  std::uint64_t reads = 0;
  std::uint64_t applied = 0;             // applied writes of any kind, outside writes excluded
  std::uint64_t conflicts = 0;           // conflict, absent and exists answers
  std::uint64_t injected_transient = 0;  // transient and transient_restart
  std::uint64_t injected_indeterminate = 0;
  std::uint64_t injected_permanent = 0;
  std::uint64_t outside_writes = 0;
  std::uint64_t read_faults = 0;
};

namespace detail {

/// splitmix64: a counter-based generator; draw n of seed s is a pure function of (s, n).
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// A uniform double in [0, 1) from 53 random bits.
[[nodiscard]] constexpr double unit_interval(std::uint64_t bits) noexcept {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

}  // namespace detail

template <class Key, class Value, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class memory_store {
 public:
  using key_type = Key;
  using value_type = Value;
  using token_type = std::uint64_t;
  /// A sparse patch: a callable that edits the stored value in place. It runs under the key's
  /// shard mutex on a copy of the value, which replaces the stored one only if it returns.
  using patch_type = std::function<void(Value&)>;
  /// Called under the shard mutex when an injected outside writer writes `key`.
  using outside_writer_fn = std::function<void(const Key&, Value&)>;
  using read_result_type = read_result<Value, token_type>;
  using write_result_type = write_result<token_type>;

  static constexpr std::size_t shard_count = 16;

  memory_store() = default;
  explicit memory_store(fault_config faults) { set_faults(std::move(faults)); }

  memory_store(const memory_store&) = delete;
  memory_store& operator=(const memory_store&) = delete;

  /// Replaces the fault configuration (validated first; throws std::invalid_argument). Calls in
  /// flight may still use the old one.
  void set_faults(fault_config faults) {
    faults.validate();
    annotated_lock lock(config_mutex_);
    faults_ = faults;
    seed_.store(faults.seed, std::memory_order_relaxed);
    draws_.store(0, std::memory_order_relaxed);
    faults_enabled_.store(has_faults(faults), std::memory_order_release);
  }

  [[nodiscard]] fault_config faults() const {
    annotated_lock lock(config_mutex_);
    return faults_;
  }

  /// What the injected outside writer does to the value (default: nothing, only the version
  /// moves). Runs under the key's shard mutex.
  void set_outside_writer(outside_writer_fn fn) {
    annotated_lock lock(config_mutex_);
    outside_writer_ = std::move(fn);
  }

  // ---- the store contract ------------------------------------------------------------------

  [[nodiscard]] read_result_type read(const Key& key) {
    if (faults_enabled_.load(std::memory_order_acquire)) [[unlikely]]
      return read_with_faults(key);
    stat(stats_.reads);
    return read_entry(key);
  }

  [[nodiscard]] write_result_type write_if_match(const Key& key, const token_type& token,
                                                 const Value& value) {
    return conditional_write(key, [&](entry_map& map, typename entry_map::iterator it) -> write_result_type {
      if (it == map.end()) return count_conflict(write_result_type::make_absent());
      if (it->second.version != token) return count_conflict(write_result_type::make_conflict());
      it->second.value = value;
      it->second.version = next_version();
      return write_result_type::make_applied(it->second.version);
    });
  }

  [[nodiscard]] write_result_type create_if_absent(const Key& key, const Value& value) {
    return conditional_write(key, [&](entry_map& map, typename entry_map::iterator it) -> write_result_type {
      if (it != map.end()) return count_conflict(write_result_type::make_exists());
      const token_type version = next_version();
      map.emplace(key, entry{value, version});
      return write_result_type::make_applied(version);
    });
  }

  [[nodiscard]] write_result_type erase_if_match(const Key& key, const token_type& token) {
    return conditional_write(key, [&](entry_map& map, typename entry_map::iterator it) -> write_result_type {
      if (it == map.end()) return count_conflict(write_result_type::make_absent());
      if (it->second.version != token) return count_conflict(write_result_type::make_conflict());
      map.erase(it);
      return write_result_type::make_applied();
    });
  }

  [[nodiscard]] write_result_type patch_if_match(const Key& key, const token_type& token,
                                                 const patch_type& patch) {
    if (!patch) throw std::invalid_argument("noclobber::memory_store::patch_if_match: the patch is empty");
    return conditional_write(key, [&](entry_map& map, typename entry_map::iterator it) -> write_result_type {
      if (it == map.end()) return count_conflict(write_result_type::make_absent());
      if (it->second.version != token) return count_conflict(write_result_type::make_conflict());
      Value patched = it->second.value;  // a throwing patch leaves the stored value alone
      patch(patched);
      it->second.value = std::move(patched);
      it->second.version = next_version();
      return write_result_type::make_applied(it->second.version);
    });
  }

  /// The blind write (create or replace) that loses updates. Only the naive negative control
  /// and the race harness should call it. Latency is injected; no other fault.
  [[nodiscard]] write_result_type overwrite(const Key& key, const Value& value) {
    sleep_latency(snapshot_faults());
    shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    const token_type version = next_version();
    auto it = s.map.find(key);
    if (it == s.map.end()) {
      s.map.emplace(key, entry{value, version});
    } else {
      it->second.value = value;
      it->second.version = version;
    }
    stat(stats_.applied);
    return write_result_type::make_applied(version);
  }

  // ---- inspection, free of faults and latency ------------------------------------------------

  /// The current value and version, or nullopt when absent. No fault, no latency.
  [[nodiscard]] std::optional<std::pair<Value, token_type>> peek(const Key& key) const {
    const shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    return std::pair<Value, token_type>(it->second.value, it->second.version);
  }

  /// Every key and value (shard by shard; not an atomic snapshot while writers run).
  [[nodiscard]] std::vector<std::pair<Key, Value>> snapshot() const {
    std::vector<std::pair<Key, Value>> out;
    for (const shard& s : shards_) {
      annotated_lock lock(s.mutex);
      for (const auto& [k, e] : s.map) out.emplace_back(k, e.value);
    }
    return out;
  }

  [[nodiscard]] std::size_t size() const {
    std::size_t n = 0;
    for (const shard& s : shards_) {
      annotated_lock lock(s.mutex);
      n += s.map.size();
    }
    return n;
  }

  [[nodiscard]] memory_store_stats stats() const {
    memory_store_stats out;
    out.reads = stats_.reads.load(std::memory_order_relaxed);
    out.applied = stats_.applied.load(std::memory_order_relaxed);
    out.conflicts = stats_.conflicts.load(std::memory_order_relaxed);
    out.injected_transient = stats_.injected_transient.load(std::memory_order_relaxed);
    out.injected_indeterminate = stats_.injected_indeterminate.load(std::memory_order_relaxed);
    out.injected_permanent = stats_.injected_permanent.load(std::memory_order_relaxed);
    out.outside_writes = stats_.outside_writes.load(std::memory_order_relaxed);
    out.read_faults = stats_.read_faults.load(std::memory_order_relaxed);
    return out;
  }

 private:
  struct entry {
    Value value;
    token_type version;
  };
  using entry_map = std::unordered_map<Key, entry, Hash, KeyEqual>;

  // Each shard on its own cache lines, so disjoint keys don't share a mutex's line.
  struct alignas(64) shard {
    mutable annotated_mutex mutex;
    entry_map map NOCLOBBER_GUARDED_BY(mutex);
  };

  struct counters {
    std::atomic<std::uint64_t> reads{0};
    std::atomic<std::uint64_t> applied{0};
    std::atomic<std::uint64_t> conflicts{0};
    std::atomic<std::uint64_t> injected_transient{0};
    std::atomic<std::uint64_t> injected_indeterminate{0};
    std::atomic<std::uint64_t> injected_permanent{0};
    std::atomic<std::uint64_t> outside_writes{0};
    std::atomic<std::uint64_t> read_faults{0};
  };

  static bool has_faults(const fault_config& f) noexcept {
    return f.latency_max.count() > 0 || f.transient > 0 || f.transient_restart > 0 ||
           f.indeterminate_applied > 0 || f.indeterminate_lost > 0 || f.permanent > 0 ||
           f.outside_writer > 0 || f.read_transient > 0;
  }

  static void stat(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

  write_result_type count_conflict(write_result_type r) noexcept {
    stat(stats_.conflicts);
    return r;
  }

  fault_config snapshot_faults() const {
    if (!faults_enabled_.load(std::memory_order_acquire)) return fault_config{};
    annotated_lock lock(config_mutex_);
    return faults_;
  }

  outside_writer_fn snapshot_outside_writer() const {
    annotated_lock lock(config_mutex_);
    return outside_writer_;
  }

  double draw() noexcept {
    const std::uint64_t n = draws_.fetch_add(1, std::memory_order_relaxed);
    return detail::unit_interval(detail::splitmix64(seed_mix(n)));
  }

  std::uint64_t seed_mix(std::uint64_t n) const noexcept {
    return detail::splitmix64(seed_.load(std::memory_order_relaxed)) ^ (n * 0xD1B54A32D192ED03ULL);
  }

  void sleep_latency(const fault_config& f) {
    if (f.latency_max.count() <= 0) return;
    // 0 <= min <= max, so the span fits; the double product may round up past it near
    // nanoseconds::max(): clamp it to the span, so that min + extra <= max cannot overflow.
    const std::int64_t span = (f.latency_max.get() - f.latency_min.get()).count();
    const double drawn = draw() * static_cast<double>(span);
    const std::int64_t extra =
        drawn < static_cast<double>(span) ? std::min(static_cast<std::int64_t>(drawn), span) : span;
    const auto delay = f.latency_min.get() + std::chrono::nanoseconds(extra);
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
  }

  // read() with faults configured: latency, then maybe an injected transient read. Out of
  // line, so that the fault-free read stays small enough to be inlined into its caller.
  [[gnu::noinline]] read_result_type read_with_faults(const Key& key) {
    const fault_config f = snapshot_faults();
    sleep_latency(f);
    stat(stats_.reads);
    if (f.read_transient > 0.0 && draw() < f.read_transient) {
      stat(stats_.read_faults);
      return read_result_type::make_failed(read_status::transient, {"injected", "injected transient read"});
    }
    return read_entry(key);
  }

  read_result_type read_entry(const Key& key) {
    shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return read_result_type::make_absent();
    return read_result_type::make_found(it->second.value, it->second.version);
  }

  token_type next_version() noexcept { return next_version_.fetch_add(1, std::memory_order_relaxed) + 1; }

  shard& shard_for(const Key& key) { return shards_[Hash{}(key) % shard_count]; }
  const shard& shard_for(const Key& key) const { return shards_[Hash{}(key) % shard_count]; }

  /// Injects the write-side faults around `apply(map, iterator)`, which runs under the shard
  /// mutex and decides the real outcome.
  template <class Apply>
  write_result_type conditional_write(const Key& key, Apply&& apply) {
    const fault_config f = snapshot_faults();
    sleep_latency(f);
    bool report_unknown = false;
    if (faults_enabled_.load(std::memory_order_relaxed)) {
      const double roll = draw();
      double edge = f.transient;
      if (roll < edge) return injected(write_status::transient, "injected transient");
      edge += f.transient_restart;
      if (roll < edge) return injected(write_status::transient_restart, "injected transient_restart");
      edge += f.indeterminate_lost;
      if (roll < edge) return injected(write_status::indeterminate, "injected indeterminate (not applied)");
      edge += f.permanent;
      if (roll < edge) return injected(write_status::permanent, "injected permanent");
      edge += f.indeterminate_applied;
      report_unknown = roll < edge;
    }
    const bool outside = f.outside_writer > 0.0 && draw() < f.outside_writer;
    outside_writer_fn outside_fn = outside ? snapshot_outside_writer() : outside_writer_fn{};

    shard& s = shard_for(key);
    annotated_lock lock(s.mutex);
    auto it = s.map.find(key);
    if (outside && it != s.map.end()) {
      if (outside_fn) {
        Value changed = it->second.value;
        outside_fn(key, changed);
        it->second.value = std::move(changed);
      }
      it->second.version = next_version();
      stat(stats_.outside_writes);
    }
    write_result_type result = apply(s.map, it);
    if (result.status != write_status::applied) return result;
    stat(stats_.applied);
    if (report_unknown) {
      stat(stats_.injected_indeterminate);
      return write_result_type::make_failed(write_status::indeterminate,
                                            {"injected", "injected indeterminate (applied)"});
    }
    return result;
  }

  write_result_type injected(write_status s, const char* what) {
    if (s == write_status::indeterminate) {
      stat(stats_.injected_indeterminate);
    } else if (s == write_status::permanent) {
      stat(stats_.injected_permanent);
    } else {
      stat(stats_.injected_transient);
    }
    return write_result_type::make_failed(s, {"injected", what});
  }

  std::array<shard, shard_count> shards_;
  std::atomic<std::uint64_t> next_version_{0};
  std::atomic<std::uint64_t> draws_{0};
  std::atomic<std::uint64_t> seed_{0};
  std::atomic<bool> faults_enabled_{false};
  mutable annotated_mutex config_mutex_;  // never held together with a shard mutex
  fault_config faults_ NOCLOBBER_GUARDED_BY(config_mutex_);
  outside_writer_fn outside_writer_ NOCLOBBER_GUARDED_BY(config_mutex_);
  counters stats_;
};

}  // namespace noclobber
