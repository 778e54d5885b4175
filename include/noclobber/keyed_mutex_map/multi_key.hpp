// noclobber/keyed_mutex_map/multi_key.hpp — several keys of a keyed_mutex_map locked at once,
// without deadlock: lock_all and its try, timed and stoppable forms.
//
// Overview
// --------
// kmm_multi_core extends kmm_core (keyed_mutex_map/core.hpp) with the multi-key algorithm:
//
//   order    hash every key, sort by (shard, hash), fold duplicates (equal keys have equal
//            hashes, so they end up adjacent within a run of equal hashes).
//   take     shard by shard in ascending shard order, all keys of one shard at once under its
//            lock ("a group"): all are free -> take them all; otherwise find one that blocks.
//   wait     spin a little, then park on the blocker (keyed_mutex_map/parking.hpp) with a
//            reference to it; when woken or handed it, look at the whole group again.
//
// Two multi-key calls can never deadlock each other: groups are taken in one global order, and
// a group is taken all at once, so equal (shard, hash) ties never split across waits. A group
// waiter holds none of its own shard's keys while it parks: a key handed to it while another key
// of the group is busy is released again (to the next waiter) before it parks on the busy one.
//
// Invariants: as in core.hpp. A group's fresh entries are installed or recycled before the call
// returns or throws. A failed try / timed / stopped call holds nothing and counts nothing.
//
// Thread safety: every member may be called concurrently. User code: Hash and Key's conversion
// and construction run under no lock; KeyEqual runs under the group's shard lock (if it throws,
// the shard is restored and nothing is held).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "noclobber/keyed_mutex_map/core.hpp"
#include "noclobber/keyed_mutex_map/entry_pool.hpp"
#include "noclobber/keyed_mutex_map/entry_state.hpp"
#include "noclobber/keyed_mutex_map/parking.hpp"
#include "noclobber/keyed_mutex_map/shard.hpp"
#include "noclobber/keyed_mutex_map/thread_cache.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::detail {

template <class Key, class Hash, class KeyEqual>
class kmm_multi_core : public kmm_core<Key, Hash, KeyEqual> {
  using base = kmm_core<Key, Hash, KeyEqual>;
  using typename base::after_unlock;
  using typename base::pinned;

 public:
  using entry = kmm_entry<Key>;
  using base::base;

  // Each appends the entries it takes to `held` (in lock order) and returns false when a try, a
  // deadline or a stop request gave up. Whether it returns false or throws, `held` keeps what was
  // taken so far, for the caller to release.

  /// The keys of an input range; elements used in place (key_in_place) or converted to Key.
  template <class R>
  bool acquire_range(R&& keys, const kmm_wait_spec& wait, std::vector<entry*>& held) {
    using ref = std::ranges::range_reference_t<R>;
    using V = std::remove_cvref_t<ref>;
    if constexpr (base::template key_in_place<V> && std::ranges::forward_range<R> &&
                  std::is_lvalue_reference_v<ref>) {
      std::vector<key_ref<V>> refs;
      if constexpr (std::ranges::sized_range<R>)
        refs.reserve(static_cast<std::size_t>(std::ranges::size(keys)));
      for (const V& k : keys) refs.push_back(ref_to(k));
      return acquire_refs(refs, wait, held);
    } else {
      // Elements that do not stay put (an input range, prvalues) or that need converting: copy.
      using stored = std::conditional_t<base::template key_in_place<V>, V, Key>;
      std::vector<stored> copies;
      for (auto&& k : keys) copies.emplace_back(std::forward<decltype(k)>(k));
      return acquire_range(copies, wait, held);
    }
  }

  /// lock_all(k1, k2, ...): keys of one type are used in place; mixed types are converted to
  /// their common type first (e.g. std::string_view for std::string + const char*).
  template <class... Ks>
  bool acquire_variadic(const kmm_wait_spec& wait, std::vector<entry*>& held, const Ks&... keys) {
    using first_arg = std::remove_cvref_t<std::tuple_element_t<0, std::tuple<Ks...>>>;
    using first = std::decay_t<first_arg>;
    if constexpr ((std::is_same_v<std::decay_t<Ks>, first> && ...) && !std::is_array_v<first_arg>) {
      std::vector<key_ref<first>> refs{ref_to(keys)...};
      return acquire_refs(refs, wait, held);
    } else {
      using common = std::common_type_t<std::decay_t<Ks>...>;
      const std::array<common, sizeof...(Ks)> converted{common(keys)...};
      return acquire_range(converted, wait, held);
    }
  }

 private:
  /// A key with its hash and shard. `key` points into the caller's keys, which outlive the call.
  template <class K>
  struct key_ref {
    std::size_t hash;
    std::size_t shard;
    const K* key;
  };
  template <class K>
  key_ref<K> ref_to(const K& k) {
    const std::size_t h = this->hash_(k);
    return {h, this->shard_index(h), &k};
  }

  /// One shard's keys refs[0 … n) of a multi-key call; fresh[i] is a prepared entry for key i and
  /// out[i] receives key i's entry.
  template <class K>
  struct group {
    const key_ref<K>* refs;
    entry* const* fresh;
    entry** out;
    std::size_t n;
  };

  /// What a group waiter has on the entry it parked on, between rounds.
  struct parked_state {
    entry* e = nullptr;   // referenced by us while set
    bool woken = false;   // we hold its wake-up
    bool handed = false;  // a release handed it to us: we hold it
  };

  /// Global lock order: (shard, hash). Equal keys have equal hashes, so after sorting duplicates
  /// are adjacent within a run of equal hashes, and folding them compares only within such runs.
  template <class K>
  void order_and_fold(std::vector<key_ref<K>>& refs) const {
    std::sort(refs.begin(), refs.end(), [](const key_ref<K>& a, const key_ref<K>& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.hash < b.hash;
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < refs.size(); ++i) {
      bool dup = false;
      for (std::size_t j = kept; j-- > 0 && refs[j].hash == refs[i].hash;) {
        if (this->eq_(*refs[j].key, *refs[i].key)) {
          dup = true;
          break;
        }
      }
      if (!dup) refs[kept++] = refs[i];
    }
    refs.resize(kept);
  }

  /// Orders and folds `refs`, then takes them shard by shard (see the overview).
  template <class K>
  bool acquire_refs(std::vector<key_ref<K>>& refs, const kmm_wait_spec& wait, std::vector<entry*>& held) {
    if (wait.stop_requested()) return false;
    order_and_fold(refs);
    held.reserve(held.size() + refs.size());  // appending below must not throw with keys held
    std::vector<entry*> fresh(refs.size());
    std::vector<entry*> out(refs.size());
    std::optional<kmm_late_slot> late;
    kmm_cache_slot& slot = this->my_slot(late);
    std::uint64_t contended = 0;
    for (std::size_t b = 0; b < refs.size();) {
      std::size_t e = b;
      while (e < refs.size() && refs[e].shard == refs[b].shard) ++e;
      const std::size_t n = e - b;
      std::size_t prepared = 0;
      try {
        for (; prepared < n; ++prepared)
          fresh[prepared] = kmm_take_entry<Key>(slot, *refs[b + prepared].key, refs[b + prepared].hash);
      } catch (...) {
        for (std::size_t i = 0; i < prepared; ++i) kmm_recycle(slot, fresh[i]);
        throw;  // the caller releases the shards taken so far
      }
      const group<K> g{refs.data() + b, fresh.data(), out.data(), n};
      bool waited = false;
      if (!acquire_group(this->shard_at(refs[b].shard), g, wait, slot, waited)) return false;
      held.insert(held.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
      if (waited) contended += n;
      b = e;
    }
    kmm_cache_slot::bump(slot.acquisitions, refs.size());  // only once every group is taken
    if (contended != 0) kmm_cache_slot::bump(slot.contended, contended);
    return true;
  }

  /// Takes every key of `g` (all in shard `s`) at once, waiting as `wait` says. False when it gave
  /// up. Whatever happens, the group's fresh entries are installed or recycled and every reference
  /// it took is dropped or became a hold. Throws only what KeyEqual (or the standard mutex /
  /// condition variable) throws; nothing of the group is held then.
  template <class K>
  bool acquire_group(kmm_shard& s, const group<K>& g, const kmm_wait_spec& wait, kmm_cache_slot& slot,
                     bool& waited) {
    std::optional<kmm_waiter> node;  // built when it first parks
    parked_state parked;
    int spin_rounds = 0;
    for (;;) {
      after_unlock a;
      entry* head = kmm_lock_chain<Key>(s);
      this->sweep_dead(s, head, a);
      entry* blocker = nullptr;
      try {
        look_up(head, g);
      } catch (...) {
        settle(s, parked, a);
        kmm_unlock_chain(s, head);
        this->finish(a);
        recycle_all(slot, g);
        throw;
      }
      blocker = take_all(s, head, g, parked, a);
      if (blocker == nullptr) {
        kmm_unlock_chain(s, head);
        this->finish(a);
        for (std::size_t i = 0; i < g.n; ++i)
          if (g.out[i] != g.fresh[i]) kmm_recycle(slot, g.fresh[i]);
        return true;
      }
      waited = true;
      const bool give_up = wait.gives_up();
      if (blocker != parked.e || give_up) settle(s, parked, a);
      if (give_up) {
        kmm_unlock_chain(s, head);
        this->finish(a);
        recycle_all(slot, g);
        return false;
      }
      if (parked.e == nullptr && spin_rounds < kmm_key_spin_rounds) {
        // Short bounded spin before parking: the holder is usually about to let go.
        ++spin_rounds;
        const std::uint64_t seen = blocker->state.load(std::memory_order_relaxed);
        kmm_unlock_chain(s, head);
        this->finish(a);
        spin_while_unchanged(blocker, seen);
        continue;
      }
      if (!node) node.emplace(kmm_mode::exclusive);
      const bool queued = queue_on(s, blocker, *node, parked);
      kmm_unlock_chain(s, head);
      this->finish(a);
      if (!queued) continue;  // it became free (or died) meanwhile: look again
      kmm_cache_slot::bump(slot.sleeps);
      kmm_wakeups passed;
      const kmm_park_result r = kmm_park(s, parked.e, *node, wait, passed);
      this->count_wakeups(&slot, passed);
      switch (r) {
        case kmm_park_result::handed:
          kmm_cache_slot::bump(slot.handoffs);
          parked.handed = true;
          break;
        case kmm_park_result::woken:
          parked.woken = true;
          break;
        case kmm_park_result::gave_up:
          this->unpin(std::exchange(parked.e, nullptr));
          recycle_all(slot, g);
          return false;
      }
    }
  }

  /// out[i] = the entry of key i in the chain (live, or dead since the sweep), or nullptr. Shard lock held
  /// (the keys of chain entries are fixed meanwhile). May throw what KeyEqual throws.
  template <class K>
  void look_up(entry* head, const group<K>& g) const {
    for (std::size_t i = 0; i < g.n; ++i) {
      g.out[i] = nullptr;
      for (entry* e = head; e != nullptr; e = e->next.load(std::memory_order_relaxed)) {
        if (e->hash.load(std::memory_order_relaxed) != g.refs[i].hash) continue;
        // Claimed: logically gone (acquire: a fresh entry's hold starts after its last release).
        if ((kmm_settled_state(e) & kmm_claimed) != 0) continue;
        if (this->eq_(*e->key, *g.refs[i].key)) {
          g.out[i] = e;
          break;
        }
      }
    }
  }

  /// Takes every key of the group, or none: returns nullptr when all are taken (absent keys get
  /// their fresh entries), else an entry that blocks. A lock-free taker may get a key between the
  /// look and the take; then what was taken is let go again. Shard lock held.
  template <class K>
  entry* take_all(kmm_shard& s, entry*& head, const group<K>& g, parked_state& parked,
                  after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    for (std::size_t i = 0; i < g.n; ++i) {
      entry* e = g.out[i];
      if (e == nullptr || (e == parked.e && parked.handed)) continue;
      if (!kmm_can_take(e->state.load(std::memory_order_relaxed), kmm_mode::exclusive, false)) return e;
    }
    for (std::size_t i = 0; i < g.n; ++i) {
      entry* e = g.out[i];
      if (e == nullptr) continue;
      if (e == parked.e) {
        if (parked.handed) continue;
        std::uint64_t st = e->state.load(std::memory_order_relaxed);
        if (this->take_referenced(e, kmm_mode::exclusive, parked.woken, st)) {
          parked.woken = false;
          parked.handed = true;  // held by us now, through the reference we parked with
          continue;
        }
        undo_takes(s, g, i, parked, a);
        return e;
      }
      const pinned p = pin_under_lock(e);
      if (p.e == nullptr) {  // claimed since the look: its key is absent now
        g.out[i] = nullptr;
        continue;
      }
      if (!p.held) {
        this->unpin(e);
        undo_takes(s, g, i, parked, a);
        return e;
      }
    }
    for (std::size_t i = 0; i < g.n; ++i) {
      if (g.out[i] != nullptr) continue;
      entry* f = g.fresh[i];
      f->state.store(kmm_ref_one | kmm_held, std::memory_order_release);
      f->next.store(head, std::memory_order_relaxed);
      head = f;
      g.out[i] = f;
    }
    // The entry we parked on (if any) is one of the group's keys: its reference is its hold now.
    parked = parked_state{};
    return nullptr;
  }

  /// A reference and the hold of `e` (live, or dead: revived) if it is free; fails on a claimed
  /// entry. Shard lock held. Never throws: no check of the reference limit (2^32 - 1), which
  /// would need as many threads and guards on this one key.
  static pinned pin_under_lock(entry* e) noexcept {
    std::uint64_t st = e->state.load(std::memory_order_acquire);  // as in kmm_core::pin
    for (;;) {
      if ((st & kmm_claimed) != 0) return {};
      const bool now = kmm_can_take(st, kmm_mode::exclusive, false);
      const std::uint64_t next = st + kmm_ref_one + (now ? kmm_held : 0);
      if (e->state.compare_exchange_weak(st, next, std::memory_order_acquire, std::memory_order_acquire))
        return {e, now};
    }
  }

  /// Lets go of the keys out[0 … i) this round took (the parked entry stays held: settle lets go
  /// of it). Shard lock held.
  template <class K>
  void undo_takes(kmm_shard& s, const group<K>& g, std::size_t i, const parked_state& parked,
                  after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    for (std::size_t j = 0; j < i; ++j) {
      entry* e = g.out[j];
      if (e == nullptr || e == parked.e) continue;
      this->release_locked(s, e, kmm_mode::exclusive, a);
    }
  }

  /// Lets go of what we have on the entry we parked on: a hold handed to us is released (serving
  /// its queue), a wake-up we hold is passed on, and our reference dropped. Shard lock held.
  void settle(kmm_shard& s, parked_state& parked, after_unlock& a) noexcept NOCLOBBER_REQUIRES(s) {
    entry* e = std::exchange(parked.e, nullptr);
    if (e == nullptr) return;
    if (parked.handed) {
      this->release_locked(s, e, kmm_mode::exclusive, a);
    } else {
      if (parked.woken) this->pass_on_locked(s, e, a);
      this->unpin(e);
    }
    parked.woken = parked.handed = false;
  }

  /// Parks `node` on `blocker`: references it (unless we already do) and queues the node, unless
  /// it became free or was claimed since the look (false: look again). Shard lock held.
  bool queue_on(kmm_shard& s, entry* blocker, kmm_waiter& node, parked_state& parked) noexcept
      NOCLOBBER_REQUIRES(s) {
    if (parked.e != blocker) {
      std::uint64_t st = blocker->state.load(std::memory_order_relaxed);
      do {
        if (kmm_refs(st) == 0 || (st & kmm_claimed) != 0) return false;
      } while (!blocker->state.compare_exchange_weak(st, st + kmm_ref_one, std::memory_order_acquire,
                                                     std::memory_order_relaxed));
      parked.e = blocker;
    }
    kmm_rearm(node);
    // If it became free since the look, take_or_queue takes it instead of queuing: we then look
    // at the group again holding it, as if it had been handed to us.
    if (this->take_or_queue(s, blocker, node, parked.woken)) {
      parked.woken = false;
      parked.handed = true;
      return false;
    }
    parked.woken = false;
    return true;
  }

  static void spin_while_unchanged(const entry* e, std::uint64_t seen) noexcept {
    for (int i = 0; i < kmm_key_spins; ++i) {
      kmm_cpu_relax();
      if (e->state.load(std::memory_order_relaxed) != seen) return;
    }
  }

  template <class K>
  static void recycle_all(kmm_cache_slot& slot, const group<K>& g) noexcept {
    for (std::size_t i = 0; i < g.n; ++i) kmm_recycle(slot, g.fresh[i]);
  }
};

}  // namespace noclobber::detail
