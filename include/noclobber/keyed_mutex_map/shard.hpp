// noclobber/keyed_mutex_map/shard.hpp — one shard of a keyed_mutex_map: a word that is both the
// head of the shard's chain of live entries and the lock that guards the chain, and the queue of
// the threads parked on the shard's keys.
//
// Overview
// --------
// A keyed_mutex_map (noclobber/keyed_mutex_map.hpp) spreads keys over shards by hash. Each shard
// is one 64-byte cache line:
//
//   word  = address of the first entry of the shard's chain | flag bits (entries are 64-byte
//           aligned, so the low bits are free)
//     kmm_locked    the shard lock is held: the chain links and the queue may be changed
//     kmm_sleepers  someone sleeps (std::atomic::wait) for the shard lock: unlock must notify
//   queue = the waiters parked on any key of this shard, oldest first (parking.hpp); guarded by
//           the shard lock
//
// The chain changes under the shard lock, or lock-free by one CAS on the word while the lock is
// free: an empty shard gets its first entry (0 -> entry), or a shard whose only entry is a dead
// one that a locker of another key has claimed gets that locker's entry (dead -> fresh). Entries
// stay in the chain while dead (entry_state.hpp), so the word of a shard in use rarely changes.
//
// Lock-free readers walk the chain without the lock (entries are never freed while the map's
// pool lives, so a stale pointer reads a valid entry; the reader then checks what it found).
//
// The shard lock spins briefly, then sleeps on the word. It is never held while user code runs,
// except KeyEqual (see keyed_mutex_map.hpp), and nothing else is taken under it.
//
// Thread safety: every member may be called from any thread; lock()/unlock() pair up like a mutex
// (a Clang capability: the queue is NOCLOBBER_GUARDED_BY the shard). No user code runs here.
#pragma once

#include <atomic>
#include <cstdint>

#include "noclobber/thread_annotations.hpp"

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
inline constexpr std::uintptr_t kmm_flags = 7;     // (bit 2 unused)

inline constexpr int kmm_shard_spins = 128;    // pauses before sleeping on a shard lock
inline constexpr int kmm_key_spin_rounds = 2;  // multi-key groups: rounds of spinning before parking
inline constexpr int kmm_key_spins = 64;       // pauses per round before parking on a busy key

struct kmm_waiter;  // parking.hpp

/// The chain head a shard word names.
template <class Entry>
[[nodiscard]] inline Entry* kmm_head_of(std::uintptr_t word) noexcept {
  return reinterpret_cast<Entry*>(word & ~kmm_flags);
}

struct NOCLOBBER_CAPABILITY("keyed_mutex_map shard") alignas(64) kmm_shard {
  std::atomic<std::uintptr_t> word{0};
  kmm_waiter* queue_head NOCLOBBER_GUARDED_BY(this) = nullptr;  // oldest first
  kmm_waiter* queue_tail NOCLOBBER_GUARDED_BY(this) = nullptr;

  /// Takes the shard lock: spin briefly, then sleep on the word. Returns the word as it was.
  std::uintptr_t lock() noexcept NOCLOBBER_ACQUIRE() {
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

  /// Releases the shard lock, publishing `published` (the chain head, or 0 for an empty chain;
  /// never with kmm_locked or kmm_sleepers).
  void unlock(std::uintptr_t published) noexcept NOCLOBBER_RELEASE() {
    if (word.exchange(published, std::memory_order_release) & kmm_sleepers) word.notify_all();
  }
};

}  // namespace noclobber::detail
