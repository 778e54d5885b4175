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
//   forced   every writer waits after each of its reads until every writer still running has
//            read (a reusable barrier with a timeout; one round per read, a writer whose ops are
//            done leaves it). Naive writers then all write the version they read: W − 1 are lost
//            per round, K × (W − 1) over K ops. A store or strategy that holds a lock across read
//            and write makes the barrier time out; the report says "writers serialised" instead
//            of hanging.
//   explore  PCT (Burckhardt et al. 2010): exactly one writer runs between scheduling points (each
//            store call); priorities and depth − 1 priority change points are drawn from a seed.
//            Each iteration's seed derives from the master seed; a losing schedule is replayed
//            twice to check that it is deterministic, and the report carries its replay line.
//   stress   free-running threads, for stores that cannot be paused. Every report says how often
//            two writers really stood in the read→write window at once (race_harness/overlap.hpp),
//            so a run that never raced is not mistaken for a safe store.
//
// Outside a harness run nothing is paid: your store is never modified or subclassed; the pause
// points live only in race_store.
//
// Stores: `run_race(store, …)` shares one thread-safe store object among the writers;
// `run_race_per_writer(make_store, …)` calls `make_store(i)` once per writer (one connection
// each: SQLite, PostgreSQL, Redis adapters are one-connection objects). make_store may return a
// Store&, a Store, or a std::unique_ptr<Store>.
//
// Where things live (noclobber/race_harness/):
//   options.hpp     race_options: what to run, replay lines
//   workload.hpp    the unique values a run writes
//   strategies.hpp  naive_strategy, cas_strategy, locked_cas_strategy
//   scheduler.hpp   the forced window's barrier and the explore mode's PCT scheduler
//   recorder.hpp    race_store and race_modify: what strategies call, recording every call
//   engine.hpp      run_race, run_race_per_writer and the runs behind them
//   history.hpp     the recorded history (records.hpp), its checker (checker.hpp), its text form
//   report.hpp      race_report: counts, losses, a trace, the replay line, text and JSON
//   overlap.hpp     measure_overlap: how often writers stood in the window at once
//   schedule.hpp    race_schedule: an explore schedule written out (replayable, editable)
//   shrink.hpp      shrink_race: a losing explore run → a minimal run that still loses
//   html.hpp        to_html / write_html: the report as a page with an SVG timeline
//   assertions.hpp  what the Catch2 and GoogleTest assertions share: the pass rule, the replay
//                   variable, the timeline on failure
//
// Thread safety and callbacks: one thread per writer. The strategy, the workload's functions and
// the store's functions run on those threads concurrently, and never under a harness lock (in
// explore mode only one writer runs at a time, but none holds a harness lock while it runs).
// Whatever a strategy throws is caught, counted as an op error and reported; the run goes on.
#pragma once

#include "noclobber/race_harness/assertions.hpp"
#include "noclobber/race_harness/engine.hpp"
#include "noclobber/race_harness/history.hpp"
#include "noclobber/race_harness/html.hpp"
#include "noclobber/race_harness/options.hpp"
#include "noclobber/race_harness/overlap.hpp"
#include "noclobber/race_harness/recorder.hpp"
#include "noclobber/race_harness/report.hpp"
#include "noclobber/race_harness/schedule.hpp"
#include "noclobber/race_harness/shrink.hpp"
#include "noclobber/race_harness/strategies.hpp"
#include "noclobber/race_harness/workload.hpp"
