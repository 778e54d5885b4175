// noclobber/asio/keyed_async_mutex/lock_all_op.hpp — async_lock_all of a keyed_async_mutex: several
// keys taken without deadlock, as one composed Asio operation.
//
// Overview
// --------
// The keys come sorted by (shard, hash) with duplicates folded. They are taken one shard's group
// at a time in that order, holding the groups taken so far:
//
//   take      under the group's shard mutex, all of its keys at once if nobody holds or awaits
//             any of them (take_group);
//   wait      otherwise wait for one busy key with the ordinary single-key operation (FIFO, same
//             cancellation and deadline); once it is granted, take the rest of the group at once
//             — or, if another key of the group is busy now, release the granted one (to the next
//             waiter in its queue) and wait for that key instead.
//
// So a multi-key operation never holds part of a shard's group while it waits on that group,
// and holds earlier groups only while waiting for a later one: with a single global order, two
// multi-key operations cannot deadlock each other (keys of one shard with equal hashes are never
// ordered against each other). A group waiter can be overtaken while it re-queues; it is not
// FIFO among the keys of its group.
//
// Completion: always posted (an operation whose keys were all free completes via post, like
// async_lock). On cancellation or timeout of the inner wait, the keys held are released and the
// operation completes with that error and an empty multi_guard. Cancellation: terminal, partial
// and total are all honoured (the slot is passed to the inner wait).
//
// Thread safety: the operation's state is touched only by its own intermediate handlers, which
// run one at a time on the handler's executor. No user code runs under a shard mutex except the
// map's Hash, KeyEqual and Key copy (see keyed_async_mutex.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

namespace noclobber::detail {

template <class Mutex>
struct async_lock_all_op {
  using guard = typename Mutex::guard;
  using multi_guard = typename Mutex::multi_guard;
  using ordered_key = typename Mutex::ordered_key;
  using time_point = typename Mutex::clock_type::time_point;

  Mutex* m;
  std::vector<ordered_key> keys;  // lock order
  std::optional<time_point> deadline;
  std::vector<guard> held;            // room for every key: appending never reallocates
  std::size_t group = 0;              // first key of the group being taken
  std::size_t waiting = Mutex::npos;  // the key whose single-key lock we wait for
  bool done = false;                  // every key taken during initiation: complete on re-entry

  template <class CompletionToken>
  static auto start(Mutex* m, std::vector<ordered_key> keys, std::optional<time_point> deadline,
                    CompletionToken&& token) {
    async_lock_all_op op{m, std::move(keys), deadline, {}};
    op.held.reserve(op.keys.size());
    return boost::asio::async_compose<CompletionToken, void(boost::system::error_code, multi_guard)>(
        std::move(op), token);
  }

  // Initiation, or re-entry after the post that ends an operation completed during initiation.
  template <class Self>
  void operator()(Self& self) {
    if (done) return finish(self, {});
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    advance(self, true);
  }

  // The single-key lock of keys[waiting] completed.
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, guard granted) {
    if (ec) return finish(self, ec);
    const std::size_t end = Mutex::group_end(keys, group);
    const std::size_t busy = m->take_group(keys, group, end, waiting, held);
    if (busy != Mutex::npos) {
      granted.unlock();  // never hold part of a group while waiting on it
      return wait_for(self, busy);
    }
    held.push_back(std::move(granted));
    group = end;
    advance(self, false);
  }

 private:
  template <class Self>
  void advance(Self& self, bool initiating) {
    while (group < keys.size()) {
      const std::size_t end = Mutex::group_end(keys, group);
      const std::size_t busy = m->take_group(keys, group, end, Mutex::npos, held);
      if (busy != Mutex::npos) return wait_for(self, busy);
      group = end;
    }
    if (initiating) {
      done = true;
      boost::asio::post(std::move(self));  // never complete inside the initiating call
      return;
    }
    finish(self, {});
  }

  template <class Self>
  void wait_for(Self& self, std::size_t i) {
    waiting = i;
    if (deadline)
      m->async_lock_until(keys[i].key, *deadline, std::move(self));
    else
      m->async_lock(keys[i].key, std::move(self));
  }

  template <class Self>
  void finish(Self& self, boost::system::error_code ec) {
    if (ec) {
      held.clear();  // releases what was taken
      return self.complete(ec, multi_guard());
    }
    self.complete(ec, multi_guard(std::move(held)));
  }
};

}  // namespace noclobber::detail
