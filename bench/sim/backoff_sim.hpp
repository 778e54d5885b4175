// bench/sim/backoff_sim.hpp — Brooker's contention experiment in virtual time.
//
// N clients each want to apply one update to the same row with a conditional write. A client
// reads (one-way network delay each way), then immediately writes if-match; the store applies the
// write only if the row's version is still the one read. On a conflict the client asks its
// strategy for a backoff, sleeps it, and starts over from the read, until it succeeds.
//
// Everything runs on a discrete-event queue in virtual time, seeded, so one (strategy, N, seed)
// always gives the same numbers. Counted: total writes (attempts), total reads, the time the last
// client finishes (completion) and the mean finish time.
//
// Optionally clients live in `processes` processes, each with a FIFO per-key lock in front of the
// store (the object_store_file fix's second layer): a client takes its process's lock before its first read
// and releases it after its write is applied; only lock holders contend on the row.
//
// Strategies see, at each conflict, what a real client can know: how many times it failed, the
// versions it read and when, and when its write was refused (see `observation`).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <random>
#include <vector>

#include "noclobber/backoff.hpp"

namespace noclobber::sim {

using ns = std::chrono::nanoseconds;

/// What one client knows when its write is refused.
struct observation {
  ns now;                       // when the refusal reached the client
  unsigned failures;            // refusals so far, this one included (>= 1)
  std::uint64_t first_version;  // version returned by the client's first read
  ns first_read;                // when that first read returned
  std::uint64_t last_version;   // version returned by the read before this refused write
  ns last_read;                 // when that read returned
};

/// A per-client backoff strategy: answers the delay before the next read.
class client_strategy {
 public:
  virtual ~client_strategy() = default;
  virtual ns on_conflict(const observation& o, std::mt19937_64& rng) = 0;
};

using strategy_factory = std::function<std::unique_ptr<client_strategy>()>;

struct sim_config {
  unsigned clients = 10;
  ns one_way = std::chrono::microseconds(5000);         // mean one-way network delay
  ns one_way_jitter = std::chrono::microseconds(2500);  // uniform +/- around the mean
  unsigned processes = 0;                               // 0: no lock; k: k processes with a FIFO lock each
  std::uint64_t seed = 1;
};

struct sim_result {
  std::uint64_t writes = 0;
  std::uint64_t reads = 0;
  ns completion{0};       // when the last client finished
  ns mean_completion{0};  // mean finish time
  unsigned max_writes_one_client = 0;
  // Where the writes go: writes_by_attempt[k - 1] counts the writes that were some client's k-th.
  // The first N always are; with no lock all N first reads see the same version (every read
  // arrives before the first write can: reads take 2.5-7.5 ms, a read plus a write at least
  // 7.5 ms), so N - 1 of them are refused whatever the strategy: writes >= 2N - 1.
  std::vector<std::uint64_t> writes_by_attempt;
};

namespace detail {

enum class event_kind : unsigned char { read_at_server, read_back, write_at_server, write_back, start_read };

struct event {
  ns at;
  std::uint64_t seq;  // FIFO tie-break: deterministic order for equal times
  unsigned client;
  event_kind kind;
  bool operator>(const event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct client_state {
  std::unique_ptr<client_strategy> strategy;
  unsigned process = 0;
  unsigned failures = 0;
  unsigned writes = 0;
  std::uint64_t read_version = 0;  // version seen by the read now in flight / just returned
  ns read_returned{0};
  std::uint64_t first_version = 0;
  ns first_read{-1};
  bool write_ok = false;
  ns finished{-1};
};

}  // namespace detail

/// Runs one experiment. Deterministic for a given config (seed included) and strategy.
inline sim_result simulate(const sim_config& cfg, const strategy_factory& make) {
  using detail::event;
  using detail::event_kind;
  std::mt19937_64 net_rng(cfg.seed);
  std::mt19937_64 client_rng(cfg.seed ^ 0x9e3779b97f4a7c15ULL);
  const std::int64_t jitter = cfg.one_way_jitter.count();
  auto latency = [&] {
    const std::int64_t span = 2 * jitter;
    const std::int64_t r = span > 0 ? static_cast<std::int64_t>(noclobber::detail::uniform_0_to(
                                          net_rng, static_cast<std::uint64_t>(span)))
                                    : 0;
    return ns(cfg.one_way.count() - jitter + r);
  };

  std::vector<detail::client_state> clients(cfg.clients);
  for (unsigned i = 0; i < cfg.clients; ++i) {
    clients[i].strategy = make();
    clients[i].process = cfg.processes ? i % cfg.processes : 0;
  }
  std::priority_queue<event, std::vector<event>, std::greater<>> q;
  std::uint64_t seq = 0;
  auto post = [&](ns at, unsigned c, event_kind k) { q.push(event{at, seq++, c, k}); };

  // Locks: per process, a FIFO of waiting clients and whether the lock is held.
  std::vector<std::deque<unsigned>> waiters(cfg.processes);
  std::vector<bool> held(cfg.processes, false);

  for (unsigned i = 0; i < cfg.clients; ++i) {
    if (cfg.processes) {
      const unsigned p = clients[i].process;
      if (!held[p]) {
        held[p] = true;
        post(ns(0), i, event_kind::start_read);
      } else {
        waiters[p].push_back(i);
      }
    } else {
      post(ns(0), i, event_kind::start_read);
    }
  }

  std::uint64_t version = 0;
  sim_result out;
  std::int64_t finish_sum = 0;
  while (!q.empty()) {
    const event e = q.top();
    q.pop();
    auto& c = clients[e.client];
    switch (e.kind) {
      case event_kind::start_read:
        ++out.reads;
        post(e.at + latency(), e.client, event_kind::read_at_server);
        break;
      case event_kind::read_at_server:
        c.read_version = version;
        post(e.at + latency(), e.client, event_kind::read_back);
        break;
      case event_kind::read_back:
        c.read_returned = e.at;
        if (c.first_read < ns(0)) {
          c.first_read = e.at;
          c.first_version = c.read_version;
        }
        ++c.writes;
        ++out.writes;
        if (out.writes_by_attempt.size() < c.writes) out.writes_by_attempt.resize(c.writes);
        ++out.writes_by_attempt[c.writes - 1];
        post(e.at + latency(), e.client, event_kind::write_at_server);
        break;
      case event_kind::write_at_server:
        c.write_ok = (version == c.read_version);
        if (c.write_ok) ++version;
        post(e.at + latency(), e.client, event_kind::write_back);
        break;
      case event_kind::write_back:
        if (c.write_ok) {
          c.finished = e.at;
          finish_sum += e.at.count();
          if (e.at > out.completion) out.completion = e.at;
          if (cfg.processes) {  // hand the lock to the next waiter of this process, FIFO
            auto& w = waiters[c.process];
            if (w.empty()) {
              held[c.process] = false;
            } else {
              const unsigned next = w.front();
              w.pop_front();
              post(e.at, next, event_kind::start_read);
            }
          }
        } else {
          ++c.failures;
          const observation o{e.at,         c.failures,     c.first_version,
                              c.first_read, c.read_version, c.read_returned};
          const ns d = c.strategy->on_conflict(o, client_rng);
          post(e.at + d, e.client, event_kind::start_read);
        }
        break;
    }
  }
  for (const auto& c : clients) {
    if (c.writes > out.max_writes_one_client) out.max_writes_one_client = c.writes;
  }
  out.mean_completion = cfg.clients ? ns(finish_sum / cfg.clients) : ns(0);
  return out;
}

}  // namespace noclobber::sim
