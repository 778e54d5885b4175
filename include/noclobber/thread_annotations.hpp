// noclobber/thread_annotations.hpp — Clang thread-safety annotations, compiled to nothing elsewhere.
//
// Overview
// --------
// Clang's -Wthread-safety analysis checks at compile time that data marked NOCLOBBER_GUARDED_BY(m)
// is touched only while `m` is held, that functions marked NOCLOBBER_REQUIRES(m) are called with `m`
// held, and that scoped lock objects release what they acquire. Under any other compiler every macro
// here expands to nothing, so annotated code stays portable. The macro set mirrors Abseil's
// absl/base/thread_annotations.h with a NOCLOBBER_ prefix.
//
// libstdc++'s std::mutex carries no capability attribute, so the analysis cannot see it. Code that
// wants checking uses `noclobber::annotated_mutex` (a std::mutex with the attributes) and
// `noclobber::annotated_lock` (its scoped guard; `annotated_unique_lock` when it is released early):
//
//   noclobber::annotated_mutex mu;
//   int hits NOCLOBBER_GUARDED_BY(mu) = 0;
//   void bump() { noclobber::annotated_lock lock(mu); ++hits; }   // -Wthread-safety checks this
//
// A std::condition_variable waits through `noclobber::annotated_wait_lock` instead.
//
// Thread safety: annotated_mutex has std::mutex's contract; annotated_lock is not shared between
// threads. No user callbacks run anywhere in this header.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__) && !defined(SWIG)
#define NOCLOBBER_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define NOCLOBBER_THREAD_ANNOTATION_(x)
#endif

// A type that acts as a lock (a "capability"); `name` appears in diagnostics.
#define NOCLOBBER_CAPABILITY(name) NOCLOBBER_THREAD_ANNOTATION_(capability(name))
// An RAII type that acquires in its constructor and releases in its destructor.
#define NOCLOBBER_SCOPED_CAPABILITY NOCLOBBER_THREAD_ANNOTATION_(scoped_lockable)
// Data member readable/writable only while `x` is held (shared for reads).
#define NOCLOBBER_GUARDED_BY(x) NOCLOBBER_THREAD_ANNOTATION_(guarded_by(x))
// The pointee of a pointer member is guarded by `x`.
#define NOCLOBBER_PT_GUARDED_BY(x) NOCLOBBER_THREAD_ANNOTATION_(pt_guarded_by(x))
// Lock-order declarations between capabilities.
#define NOCLOBBER_ACQUIRED_BEFORE(...) NOCLOBBER_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))
#define NOCLOBBER_ACQUIRED_AFTER(...) NOCLOBBER_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
// The caller must hold the capabilities (exclusively / shared) when calling.
#define NOCLOBBER_REQUIRES(...) NOCLOBBER_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define NOCLOBBER_REQUIRES_SHARED(...) NOCLOBBER_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
// The function acquires / releases the capabilities (no argument: `this`).
#define NOCLOBBER_ACQUIRE(...) NOCLOBBER_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define NOCLOBBER_ACQUIRE_SHARED(...) NOCLOBBER_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
#define NOCLOBBER_RELEASE(...) NOCLOBBER_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define NOCLOBBER_RELEASE_SHARED(...) NOCLOBBER_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
#define NOCLOBBER_RELEASE_GENERIC(...) NOCLOBBER_THREAD_ANNOTATION_(release_generic_capability(__VA_ARGS__))
// The function acquires the capability iff it returns `success` (first argument).
#define NOCLOBBER_TRY_ACQUIRE(...) NOCLOBBER_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
#define NOCLOBBER_TRY_ACQUIRE_SHARED(...) \
  NOCLOBBER_THREAD_ANNOTATION_(try_acquire_shared_capability(__VA_ARGS__))
// The caller must NOT hold the capabilities (the function acquires them itself).
#define NOCLOBBER_EXCLUDES(...) NOCLOBBER_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
// Runtime assertion that the capability is held; the analysis trusts it afterwards.
#define NOCLOBBER_ASSERT_CAPABILITY(x) NOCLOBBER_THREAD_ANNOTATION_(assert_capability(x))
#define NOCLOBBER_ASSERT_SHARED_CAPABILITY(x) NOCLOBBER_THREAD_ANNOTATION_(assert_shared_capability(x))
// The function returns a reference to the capability `x`.
#define NOCLOBBER_RETURN_CAPABILITY(x) NOCLOBBER_THREAD_ANNOTATION_(lock_returned(x))
// Opt one function out of the analysis (say why next to it).
#define NOCLOBBER_NO_THREAD_SAFETY_ANALYSIS NOCLOBBER_THREAD_ANNOTATION_(no_thread_safety_analysis)

namespace noclobber {

// std::mutex with capability attributes, so NOCLOBBER_GUARDED_BY(mu) is checked by Clang.
class NOCLOBBER_CAPABILITY("mutex") annotated_mutex {
 public:
  annotated_mutex() = default;
  annotated_mutex(const annotated_mutex&) = delete;
  annotated_mutex& operator=(const annotated_mutex&) = delete;

  void lock() NOCLOBBER_ACQUIRE() { mutex_.lock(); }
  void unlock() NOCLOBBER_RELEASE() { mutex_.unlock(); }
  bool try_lock() NOCLOBBER_TRY_ACQUIRE(true) { return mutex_.try_lock(); }

  // For std::condition_variable: wait on `native()` through a std::unique_lock you adopt/release.
  std::mutex& native() NOCLOBBER_RETURN_CAPABILITY(this) { return mutex_; }

 private:
  std::mutex mutex_;
};

// Scoped lock over annotated_mutex that a std::condition_variable can wait on (std::unique_lock
// with attributes). The analysis treats the mutex as held for the whole scope, which is what the
// code around a wait sees: a wait releases it only inside the call. Write the wait's condition as
// a loop around wait()/wait_until() in the annotated function, not as a predicate lambda: the
// analysis checks a lambda on its own and cannot see that it runs under the lock.
class NOCLOBBER_SCOPED_CAPABILITY annotated_wait_lock {
 public:
  explicit annotated_wait_lock(annotated_mutex& mu) NOCLOBBER_ACQUIRE(mu) : lock_(mu.native()) {}
  ~annotated_wait_lock() NOCLOBBER_RELEASE() {}
  annotated_wait_lock(const annotated_wait_lock&) = delete;
  annotated_wait_lock& operator=(const annotated_wait_lock&) = delete;

  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  /// Waits for a notification or `deadline`; time_point::max() waits without a deadline.
  template <class Clock, class Duration>
  std::cv_status wait_until(std::condition_variable& cv,
                            const std::chrono::time_point<Clock, Duration>& deadline) {
    if (deadline == std::chrono::time_point<Clock, Duration>::max()) {
      cv.wait(lock_);
      return std::cv_status::no_timeout;
    }
    return cv.wait_until(lock_, deadline);
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

// Scoped lock over annotated_mutex (std::lock_guard with attributes).
class NOCLOBBER_SCOPED_CAPABILITY annotated_lock {
 public:
  explicit annotated_lock(annotated_mutex& mu) NOCLOBBER_ACQUIRE(mu) : mutex_(mu) { mutex_.lock(); }
  ~annotated_lock() NOCLOBBER_RELEASE() { mutex_.unlock(); }
  annotated_lock(const annotated_lock&) = delete;
  annotated_lock& operator=(const annotated_lock&) = delete;

 private:
  annotated_mutex& mutex_;
};

// Scoped lock over annotated_mutex that may be released before the end of its scope
// (std::unique_lock's lock-once-unlock-early use, with attributes).
class NOCLOBBER_SCOPED_CAPABILITY annotated_unique_lock {
 public:
  explicit annotated_unique_lock(annotated_mutex& mu) NOCLOBBER_ACQUIRE(mu) : mutex_(mu) { mutex_.lock(); }
  ~annotated_unique_lock() NOCLOBBER_RELEASE() {
    if (owns_) mutex_.unlock();
  }
  annotated_unique_lock(const annotated_unique_lock&) = delete;
  annotated_unique_lock& operator=(const annotated_unique_lock&) = delete;

  // Releases the mutex now; the destructor then does nothing.
  void unlock() NOCLOBBER_RELEASE() {
    owns_ = false;
    mutex_.unlock();
  }

 private:
  annotated_mutex& mutex_;
  bool owns_ = true;
};

}  // namespace noclobber
