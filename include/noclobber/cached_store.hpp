// noclobber/cached_store.hpp — a read-through cache in front of any store: keep each value with
// its version token, serve reads from the copy while it is current, and let the conditional write
// behind it decide.
//
// Overview
// --------
// The object-store fix (docs/scenarios.md) keeps the downloaded SQLite file and its ETag; the next
// update asks the store "changed since this ETag?" (a conditional GET, 304) and downloads again only
// when it has; a 412 on the upload evicts the copy. `cached_store<Store>` is that, for any store of
// conditional_writer.hpp:
//
//     noclobber::store_cache<std::string, std::string, std::string> cache({.max_bytes = 256 << 20});
//     noclobber::cached_store<noclobber::s3::store> db(my_s3_store, cache);   // one view per thread
//     auto r = noclobber::read_modify_write(db, "locations.sqlite", add_row);
//
// `store_cache` is the shared part (thread-safe, one per process, bounded by entries and bytes,
// least recently used first out); `cached_store` is a view of one backing store object through it
// and fulfils the same contract (read, write_if_match, create_if_absent, and erase_if_match,
// overwrite, patch_if_match when the store has them), so every algorithm and the race harness run
// on it unchanged.
//
// When is a copy "current"? Only the store can say:
//   * the store offers read_if_changed (read_if_changed.hpp; the S3 and HTTP ETag adapters do): a
//     read with a copy sends the copy's token; "unchanged" serves the copy (the download is saved,
//     the round trip is not), anything else replaces or evicts it;
//   * otherwise nothing local can tell, so by default every read goes to the store and the cache
//     only remembers what it read and wrote. `cache_options::serve_unasked_for` lets reads use a
//     copy younger than that without asking: the read may then be stale.
// A stale copy is safe for read_modify_write: it writes with the copy's token, the store answers
// conflict, the copy is evicted and the next attempt reads from the store. A stale cache can cost
// a retry, never an update — the race tests in tests/test_cached_store.cpp check exactly that.
//
// What changes the copy: a found read stores it; an applied write stores the value written with the
// token the store returned (without a token: evicted, the next read fetches it); `transient` (the
// store did nothing) keeps it; every other write answer (conflict, absent, exists,
// transient_restart, indeterminate, permanent) and an absent read evict it. A patch evicts it (the
// result is computed by the store).
//
// Thread safety: a store_cache may be used by any number of threads and views at once. It holds
// one mutex (never two, and never while calling the store) around its index and LRU list. User
// code run under that mutex: Key's Hash, equality, copy and destruction, Token's copy, equality and
// destruction. Value's copy and destruction, SizeOf and the clock run outside it (copies are shared
// through std::shared_ptr<const Value>). A cached_store view calls its backing store from the
// calling thread with no noclobber lock held; use a view from as many threads at once as the
// backing store allows (one thread at a time for the one-connection adapters: give each thread its
// own store object and view, all sharing one store_cache).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "noclobber/conditional_writer.hpp"
#include "noclobber/outcome.hpp"
#include "noclobber/read_if_changed.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber {

/// Bounds and freshness of a store_cache. Validated by the store_cache constructor.
struct cache_options {
  std::size_t max_entries = 1024;     ///< >= 1
  std::size_t max_bytes = 64u << 20;  ///< >= 1; a value larger than this is never kept
  /// Reads may use a copy confirmed (read, written or revalidated) less than this long ago without
  /// asking the store. Zero (the default): never; such reads may be stale (see the overview).
  std::chrono::nanoseconds serve_unasked_for{0};
  /// The clock for serve_unasked_for; null: std::chrono::steady_clock::now. Never called under
  /// the cache's mutex.
  std::function<std::chrono::steady_clock::time_point()> clock = {};
};

/// What a store_cache did, counted since construction.
struct cache_stats {
  std::uint64_t misses = 0;                ///< reads with no copy: a full read from the store
  std::uint64_t revalidated = 0;           ///< copies served after the store answered "unchanged"
  std::uint64_t served_unasked = 0;        ///< copies served without asking (serve_unasked_for)
  std::uint64_t refreshed = 0;             ///< revalidations that brought a newer value (or absence)
  std::uint64_t evicted_by_answer = 0;     ///< copies dropped on conflict, absent, exists, ...
  std::uint64_t evicted_for_space = 0;     ///< copies dropped for max_entries / max_bytes
  std::uint64_t bytes_served_locally = 0;  ///< SizeOf of every copy served instead of a download
};

/// The default size of a cached value: `size() * sizeof(element)` for containers and strings,
/// `sizeof(Value)` otherwise.
struct cache_value_size {
  template <class Value>
  std::size_t operator()(const Value& v) const noexcept {
    if constexpr (requires {
                    typename Value::value_type;
                    { v.size() } -> std::convertible_to<std::size_t>;
                  }) {
      return static_cast<std::size_t>(v.size()) * sizeof(typename Value::value_type);
    } else {
      return sizeof(Value);
    }
  }
};

/// The shared, bounded, thread-safe map key -> (value, token) behind cached_store views.
template <class Key, class Value, class Token, class Hash = std::hash<Key>, class SizeOf = cache_value_size>
class store_cache {
 public:
  using clock_type = std::chrono::steady_clock;
  using time_point = clock_type::time_point;

  /// A copy as the cache holds it.
  struct copy {
    std::shared_ptr<const Value> value;
    Token token;
    time_point confirmed;  ///< when the store last vouched for it (read, write, revalidation)
    std::size_t bytes;     ///< SizeOf(value)
  };

  explicit store_cache(cache_options opt = {}) : opt_(std::move(opt)) {
    if (opt_.max_entries == 0)
      throw std::invalid_argument("noclobber::store_cache: max_entries must be >= 1");
    if (opt_.max_bytes == 0) throw std::invalid_argument("noclobber::store_cache: max_bytes must be >= 1");
    if (opt_.serve_unasked_for < std::chrono::nanoseconds::zero())
      throw std::invalid_argument("noclobber::store_cache: serve_unasked_for must be >= 0");
  }
  store_cache(const store_cache&) = delete;
  store_cache& operator=(const store_cache&) = delete;

  [[nodiscard]] time_point now() const { return opt_.clock ? opt_.clock() : clock_type::now(); }
  [[nodiscard]] const cache_options& options() const noexcept { return opt_; }

  /// The key's copy (and marks it most recently used), or nullopt.
  [[nodiscard]] std::optional<copy> find(const Key& key) {
    annotated_lock lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second);
    const entry& e = *it->second;
    return copy{e.value, e.token, e.confirmed, e.bytes};
  }

  /// Whether `c` may be served without asking the store (serve_unasked_for).
  [[nodiscard]] bool young_enough(const copy& c, time_point at) const noexcept {
    return opt_.serve_unasked_for > std::chrono::nanoseconds::zero() &&
           at - c.confirmed < opt_.serve_unasked_for;
  }

  /// Stores (or replaces) the key's copy, confirmed at `at`; drops least recently used copies to
  /// stay within the bounds. A value larger than max_bytes is not kept (and evicts the old copy).
  void put(const Key& key, Value value, Token token, time_point at) {
    const std::size_t bytes = SizeOf{}(value);
    auto shared = std::make_shared<const Value>(std::move(value));
    std::list<entry> dropped;  // destroyed after the mutex is released (Value's destructor)
    annotated_lock lock(mutex_);
    remove_locked(key, dropped);
    if (bytes > opt_.max_bytes) return;
    lru_.push_front(entry{key, std::move(shared), std::move(token), at, bytes});
    try {
      index_.emplace(key, lru_.begin());
    } catch (...) {
      lru_.pop_front();
      throw;
    }
    bytes_ += bytes;
    while (index_.size() > opt_.max_entries || bytes_ > opt_.max_bytes) {
      auto last = std::prev(lru_.end());
      index_.erase(last->key);
      bytes_ -= last->bytes;
      dropped.splice(dropped.end(), lru_, last);
      stats_.evicted_for_space.fetch_add(1, std::memory_order_relaxed);
    }
  }

  /// The store vouched for the copy with `token` again (an "unchanged" answer): renews its age.
  void confirm(const Key& key, const Token& token, time_point at) {
    annotated_lock lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end() && it->second->token == token) it->second->confirmed = at;
  }

  /// Drops the key's copy; false when there was none.
  bool evict(const Key& key) {
    std::list<entry> dropped;
    annotated_lock lock(mutex_);
    return remove_locked(key, dropped);
  }

  /// Drops every copy.
  void clear() {
    std::list<entry> dropped;
    annotated_lock lock(mutex_);
    index_.clear();
    dropped.splice(dropped.end(), lru_);
    bytes_ = 0;
  }

  [[nodiscard]] std::size_t size() const {
    annotated_lock lock(mutex_);
    return index_.size();
  }
  [[nodiscard]] std::size_t bytes() const {
    annotated_lock lock(mutex_);
    return bytes_;
  }

  [[nodiscard]] cache_stats stats() const noexcept {
    cache_stats s;
    s.misses = stats_.misses.load(std::memory_order_relaxed);
    s.revalidated = stats_.revalidated.load(std::memory_order_relaxed);
    s.served_unasked = stats_.served_unasked.load(std::memory_order_relaxed);
    s.refreshed = stats_.refreshed.load(std::memory_order_relaxed);
    s.evicted_by_answer = stats_.evicted_by_answer.load(std::memory_order_relaxed);
    s.evicted_for_space = stats_.evicted_for_space.load(std::memory_order_relaxed);
    s.bytes_served_locally = stats_.bytes_served_locally.load(std::memory_order_relaxed);
    return s;
  }

  /// Counters the views update (relaxed atomics: totals, not a consistent snapshot).
  struct counters {
    std::atomic<std::uint64_t> misses{0}, revalidated{0}, served_unasked{0}, refreshed{0},
        evicted_by_answer{0}, evicted_for_space{0}, bytes_served_locally{0};
  };
  [[nodiscard]] counters& count() noexcept { return stats_; }

 private:
  struct entry {
    Key key;
    std::shared_ptr<const Value> value;
    Token token;
    time_point confirmed;
    std::size_t bytes;
  };

  bool remove_locked(const Key& key, std::list<entry>& dropped) NOCLOBBER_REQUIRES(mutex_) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    bytes_ -= it->second->bytes;
    dropped.splice(dropped.end(), lru_, it->second);
    index_.erase(it);
    return true;
  }

  const cache_options opt_;
  mutable annotated_mutex mutex_;
  std::list<entry> lru_ NOCLOBBER_GUARDED_BY(mutex_);  // most recently used first
  std::unordered_map<Key, typename std::list<entry>::iterator, Hash> index_ NOCLOBBER_GUARDED_BY(mutex_);
  std::size_t bytes_ NOCLOBBER_GUARDED_BY(mutex_) = 0;
  counters stats_;
};

namespace detail {
template <class Store>
struct cached_patch_type {};
template <class Store>
requires requires {
  typename store_patch_t<Store>;
}
struct cached_patch_type<Store> {
  using patch_type = store_patch_t<Store>;
};
}  // namespace detail

/// The store contract through a store_cache (see the overview).
template <class Store,
          class Cache = store_cache<store_key_t<Store>, store_value_t<Store>, store_token_t<Store>>>
class cached_store : public detail::cached_patch_type<Store> {
  static_assert(check_conditional_writer<Store>());

 public:
  using key_type = store_key_t<Store>;
  using value_type = store_value_t<Store>;
  using token_type = store_token_t<Store>;
  using cache_type = Cache;
  using read_type = read_result<value_type, token_type>;
  using write_type = write_result<token_type>;
  using traits = store_traits<Store>;

  /// A view of `backing` through `cache`; both must outlive the view.
  cached_store(Store& backing, Cache& cache) noexcept : backing_(&backing), cache_(&cache) {}

  /// The copy when it is current (asking the store with read_if_changed when it can), else a
  /// read from the store, remembered.
  read_type read(const key_type& key) {
    const auto now = cache_->now();
    std::optional<typename Cache::copy> have = cache_->find(key);
    if (have && cache_->young_enough(*have, now)) {
      cache_->count().served_unasked.fetch_add(1, std::memory_order_relaxed);
      return served(*have);
    }
    if constexpr (revalidating_store<Store>) {
      if (have) {
        auto r = revalidation_traits<Store>::read_if_changed(*backing_, key, have->token);
        if (r.unchanged) {
          cache_->confirm(key, have->token, cache_->now());
          cache_->count().revalidated.fetch_add(1, std::memory_order_relaxed);
          return served(*have);
        }
        cache_->count().refreshed.fetch_add(1, std::memory_order_relaxed);
        return remember(key, std::move(r.fresh), now);
      }
    }
    cache_->count().misses.fetch_add(1, std::memory_order_relaxed);
    return remember(key, traits::read(*backing_, key), now);
  }

  write_type write_if_match(const key_type& key, const token_type& token, const value_type& value) {
    return after_write(key, value, traits::write_if_match(*backing_, key, token, value));
  }

  write_type create_if_absent(const key_type& key, const value_type& value) {
    return after_write(key, value, traits::create_if_absent(*backing_, key, value));
  }

  write_type erase_if_match(const key_type& key, const token_type& token) requires erasable_writer<Store> {
    write_type w = traits::erase_if_match(*backing_, key, token);
    if (w.status != write_status::transient) drop(key, w.status != write_status::applied);
    return w;
  }

  write_type overwrite(const key_type& key, const value_type& value) requires overwritable_store<Store> {
    return after_write(key, value, traits::overwrite(*backing_, key, value));
  }

  // S stays a template parameter so that store_patch_t is looked at only when this is called (clang
  // checks a non-dependent constraint when the class is instantiated, and a store without patches
  // has no patch type). The patch type is not deduced: anything that converts to it is taken.
  // clang-format off
  template <std::same_as<Store> S = Store>
  requires patchable_writer<S>
  write_type patch_if_match(const key_type& key, const token_type& token, const store_patch_t<S>& patch) {
    // clang-format on
    write_type w = traits::patch_if_match(*backing_, key, token, patch);
    if (w.status != write_status::transient) drop(key, w.status != write_status::applied);
    return w;
  }

  [[nodiscard]] Store& backing() noexcept { return *backing_; }
  [[nodiscard]] Cache& cache() noexcept { return *cache_; }

 private:
  read_type served(const typename Cache::copy& c) {
    cache_->count().bytes_served_locally.fetch_add(c.bytes, std::memory_order_relaxed);
    return read_type::make_found(*c.value, c.token);
  }

  read_type remember(const key_type& key, read_type&& r, typename Cache::time_point at) {
    if (r.found()) {
      cache_->put(key, r.value, r.token, at);
    } else if (r.absent() || r.status == read_status::permanent) {
      drop(key, true);
    }
    return std::move(r);
  }

  write_type after_write(const key_type& key, const value_type& value, write_type&& w) {
    if (w.status == write_status::transient) return std::move(w);  // nothing happened
    if (w.ok() && w.token) {
      cache_->put(key, value, *w.token, cache_->now());
    } else {
      drop(key, !w.ok());
    }
    return std::move(w);
  }

  void drop(const key_type& key, bool by_answer) {
    if (cache_->evict(key) && by_answer)
      cache_->count().evicted_by_answer.fetch_add(1, std::memory_order_relaxed);
  }

  Store* backing_;
  Cache* cache_;
};

}  // namespace noclobber
