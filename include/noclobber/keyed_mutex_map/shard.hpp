// noclobber/keyed_mutex_map/shard.hpp — one shard of a keyed_mutex_map: a word that is both the
// head of the shard's chain of live entries and the lock that guards the chain.
//
// Overview
// --------
// A keyed_mutex_map (noclobber/keyed_mutex_map.hpp) spreads keys over shards by hash. Each shard
// is one 64-byte cache line holding one word:
//
//   word = address of the first live entry of the shard's chain | flag bits (entries are 64-byte
//          aligned, so the low bits are free)
//     kmm_locked    the shard lock is held: the chain and the "shard" fields of its entries
//                   (noclobber/keyed_mutex_map/entry_pool.hpp) may be read and written
//     kmm_sleepers  someone sleeps (std::atomic::wait) for the shard lock: unlock must notify
//     kmm_slow      the chain is not "one entry, held exclusively, nobody waiting"
//
// Invariant: a word without kmm_slow and without kmm_locked is either 0 (no live entry) or the
// address of the shard's only entry, held exclusively with no waiter. Only then may a thread
// change the word without taking the lock: 0 -> entry (lock an idle key, one CAS) and
// entry -> 0 (its holder unlocks, one CAS). Everything else takes the shard lock.
//
// The shard lock spins briefly, then sleeps on the word. It is never held while user code runs,
// except KeyEqual (see keyed_mutex_map.hpp), and nothing but an entry's park mutex is taken under
// it (lock order: shard lock -> entry park mutex; see keyed_mutex_map/parking.hpp).
//
// Thread safety: every member may be called from any thread; lock()/unlock() pair up like a mutex.
// No user code runs here.
#pragma once

#include <atomic>
#include <cstdint>

namespace noclobber::detail {

inline void kmm_cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Shard word layout: pointer to the first live entry of the shard's chain | flag bits.
inline constexpr std::uintptr_t kmm_locked = 1;    // the shard lock is held
inline constexpr std::uintptr_t kmm_sleepers = 2;  // someone sleeps waiting for the shard lock
inline constexpr std::uintptr_t kmm_slow = 4;      // chain is not "one entry, held exclusively, no waiters"
inline constexpr std::uintptr_t kmm_flags = 7;

inline constexpr int kmm_shard_spins = 128;  // pauses before sleeping on a shard lock
inline constexpr int kmm_key_spin_rounds = 2;
inline constexpr int kmm_key_spins = 64;  // pauses per round before sleeping on a busy key

/// The chain head a shard word names.
template <class Entry>
[[nodiscard]] inline Entry* kmm_head_of(std::uintptr_t word) noexcept {
  return reinterpret_cast<Entry*>(word & ~kmm_flags);
}

struct alignas(64) kmm_shard {
  std::atomic<std::uintptr_t> word{0};

  /// Takes the shard lock: spin briefly, then sleep on the word. Returns the word as it was.
  std::uintptr_t lock() noexcept {
    std::uintptr_t w = word.load(std::memory_order_relaxed);
    int spins = 0;
    for (;;) {
      if ((w & kmm_locked) == 0) {
        if (word.compare_exchange_weak(w, w | kmm_locked, std::memory_order_acquire,
                                       std::memory_order_relaxed))
          return w;
        continue;
      }
      if (spins < kmm_shard_spins) {
        ++spins;
        kmm_cpu_relax();
        w = word.load(std::memory_order_relaxed);
        continue;
      }
      if ((w & kmm_sleepers) == 0) {
        if (!word.compare_exchange_weak(w, w | kmm_sleepers, std::memory_order_relaxed,
                                        std::memory_order_relaxed))
          continue;
        w |= kmm_sleepers;
      }
      word.wait(w, std::memory_order_relaxed);
      w = word.load(std::memory_order_relaxed);
    }
  }

  /// Releases the shard lock, publishing `published` (the chain head with kmm_slow as needed,
  /// see kmm_word_for in entry_pool.hpp; never with kmm_locked or kmm_sleepers).
  void unlock(std::uintptr_t published) noexcept {
    if (word.exchange(published, std::memory_order_release) & kmm_sleepers) word.notify_all();
  }

  /// Spins (bounded) until the word changes from `seen`: a short wait for a holder about to let
  /// go, taken before sleeping on a busy key.
  void spin_while_unchanged(std::uintptr_t seen) const noexcept {
    for (int i = 0; i < kmm_key_spins; ++i) {
      kmm_cpu_relax();
      if (word.load(std::memory_order_relaxed) != seen) return;
    }
  }
};

}  // namespace noclobber::detail
