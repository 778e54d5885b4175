// race_demo, import_retry: the import retried after a crash, on the service's own `import_runs`
// table (UNIQUE(source_id, content_hash)), through typed ledger entries. Every writer requests
// the same batches; the store crashes after COMMIT now and then. The naive check-then-insert
// imports a batch more than once; the idempotency ledger imports each once and answers the
// duplicates with the recorded result.
#pragma once

#include <noclobber/adapters/sqlite/table_store.hpp>
#include <noclobber/idempotency_ledger.hpp>
#include <noclobber/naive_read_modify_write.hpp>
#include <noclobber/race_harness.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "demo_run.hpp"

namespace demo {

// ---- the table ----------------------------------------------------------------------------------

inline const std::string import_source = "blocklist:source-7";

/// The key of import_runs: (source_id, content_hash). The ledger names entries by ledger_key(),
/// so the key is also made from that text ("ledger/<n>:<source>/<hash>").
struct run_key {
  std::string source_id;
  std::string content_hash;
  run_key() = default;
  run_key(std::string source, std::string hash)
      : source_id(std::move(source)), content_hash(std::move(hash)) {}
  explicit run_key(const std::string& ledger_key) {
    const auto colon = ledger_key.find(':');
    const auto n = std::stoul(ledger_key.substr(7, colon - 7));
    source_id = ledger_key.substr(colon + 1, n);
    content_hash = ledger_key.substr(colon + 2 + n);
  }
  [[nodiscard]] std::string text() const { return source_id + "/" + content_hash; }
  friend bool operator==(const run_key&, const run_key&) = default;
};

/// Batch `b` of the blocklist: op b of every writer requests it.
inline run_key import_batch(unsigned b) {
  return {import_source, "sha256:9f2c." + std::to_string(b)};
}

/// The `state` column's text.
struct state_codec {
  std::string encode(const nc::ledger_state& s) const { return std::string(nc::to_string(s)); }
  nc::ledger_state decode(const std::string& s) const {
    for (auto v : {nc::ledger_state::pending, nc::ledger_state::completed, nc::ledger_state::failed}) {
      if (nc::to_string(v) == s) return v;
    }
    throw nc::codec_error("unknown import state '" + s + "'");
  }
};

inline void make_import_runs(const std::string& path) {
  run_sql(
      path,
      "CREATE TABLE import_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL,"
      " content_hash TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed')),"
      " claim TEXT NOT NULL, lease_until_ns INTEGER NOT NULL, runs INTEGER NOT NULL, result TEXT NOT NULL,"
      " revision INTEGER NOT NULL, started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"
      " UNIQUE (source_id, content_hash))");
}

inline nc::table_spec<nc::ledger_entry, run_key> import_runs_spec() {
  return nc::table_spec<nc::ledger_entry, run_key>("import_runs")
      .key("source_id", &run_key::source_id)
      .key("content_hash", &run_key::content_hash)
      .column("state", &nc::ledger_entry::state, state_codec{})
      .column("claim", &nc::ledger_entry::claim)
      .column("lease_until_ns", &nc::ledger_entry::lease_until_ns)
      .column("runs", &nc::ledger_entry::runs)
      .column("result", &nc::ledger_entry::result)
      .version("revision");
}

using import_runs_store = nc::sqlite::table_store<nc::ledger_entry, run_key>;

// ---- a store that crashes between COMMIT and the answer -------------------------------------------

/// Wraps a store. With probability `p` a write is performed and then reported as indeterminate,
/// as if the process had died after COMMIT was sent and was restarted.
template <class Inner>
class crashing_store {
 public:
  using key_type = nc::store_key_t<Inner>;
  using value_type = nc::store_value_t<Inner>;
  using token_type = nc::store_token_t<Inner>;

  crashing_store(Inner inner, double p, std::uint64_t seed) : inner_(std::move(inner)), p_(p), rng_(seed) {}

  nc::read_result<value_type, token_type> read(const key_type& k) { return inner_.read(k); }
  nc::write_result<token_type> write_if_match(const key_type& k, const token_type& t, const value_type& v) {
    return maybe_crash(inner_.write_if_match(k, t, v));
  }
  nc::write_result<token_type> create_if_absent(const key_type& k, const value_type& v) {
    return maybe_crash(inner_.create_if_absent(k, v));
  }
  nc::write_result<token_type> overwrite(const key_type& k, const value_type& v) {
    return maybe_crash(inner_.overwrite(k, v));
  }

 private:
  nc::write_result<token_type> maybe_crash(nc::write_result<token_type> r) {
    if (r.ok() && std::uniform_real_distribution<double>(0, 1)(rng_) < p_) {
      return nc::write_result<token_type>::make_failed(
          nc::write_status::indeterminate, {"crash", "the importer crashed after COMMIT was sent"});
    }
    return r;
  }
  Inner inner_;
  double p_;
  std::mt19937_64 rng_;
};

// ---- the harness's tag in a ledger entry ------------------------------------------------------------

/// The result without the harness's tag (after the last '|').
inline std::string body_of(const std::string& result) {
  const auto bar = result.rfind('|');
  return bar == std::string::npos ? result : result.substr(0, bar);
}

/// A completed import record, tagged: what the naive importer writes.
inline nc::race_workload<nc::ledger_entry> import_workload() {
  nc::race_workload<nc::ledger_entry> w;
  w.next_value = [](const std::optional<nc::ledger_entry>&, const nc::write_tag& t) {
    nc::ledger_entry e;
    e.state = nc::ledger_state::completed;
    e.runs = 1;
    e.result = "bans=1200,importer=" + std::to_string(t.writer) + "|" + nc::tag_text(t);
    return e;
  };
  w.id_of = [](const nc::ledger_entry& e) { return nc::parse_write_id(e.result); };
  return w;
}

/// The idempotency ledger's view of the harness's store: it strips the harness tag from what it
/// reads and tags every entry it writes (from the harness's value function), so the harness
/// records and checks the ledger's writes like any other strategy's. A request writes in two
/// steps (the claim, then the result): race_demo sets race_options::ops_write_in_steps for this
/// strategy, so the checker does not call them doubled; whether a batch ran once is the tally's
/// to count.
template <class Store, class Fn>
class tagged_ledger_store {
 public:
  using key_type = run_key;
  using value_type = nc::ledger_entry;
  using token_type = typename Store::token_type;

  tagged_ledger_store(Store& store, Fn& fn) : store_(store), fn_(fn) {}

  nc::read_result<value_type, token_type> read(const key_type& k) {
    auto r = store_.read(k);
    if (r.found()) {
      seen_ = r.value;
      r.value.result = body_of(r.value.result);
    } else if (r.absent()) {
      seen_.reset();
    }
    return r;
  }
  nc::write_result<token_type> write_if_match(const key_type& k, const token_type& t, const value_type& e) {
    return store_.write_if_match(k, t, tagged(e, seen_));
  }
  nc::write_result<token_type> create_if_absent(const key_type& k, const value_type& e) {
    return store_.create_if_absent(k, tagged(e, std::nullopt));
  }

 private:
  value_type tagged(value_type e, const std::optional<value_type>& read) {
    const value_type made = fn_(read);  // unique, and carries the write id the harness checks
    e.result += made.result.substr(made.result.rfind('|'));
    return e;
  }
  Store& store_;
  Fn& fn_;
  std::optional<value_type> seen_;  // the last entry read, tag included
};

// ---- what the import requests got ---------------------------------------------------------------------

class once_tally {
 public:
  enum class answer { ran, recorded, none };
  void ran(const std::string& key, const std::string& result) {
    std::lock_guard lock(mutex_);
    batches_[key].results.push_back(result);
  }
  void request(const std::string& key, answer a, const std::string& result = {}) {
    std::lock_guard lock(mutex_);
    auto& b = batches_[key];
    ++b.requests;
    if (a == answer::recorded) b.answers.push_back(result);
    if (a == answer::none) ++b.unanswered;
  }
  once_stats summary() const {
    std::lock_guard lock(mutex_);
    once_stats s;
    for (const auto& [key, b] : batches_) {
      ++s.imports;
      s.requests += b.requests;
      s.runs += b.results.size();
      if (b.results.size() > 1) s.duplicate_runs += b.results.size() - 1;
      if (b.results.size() != 1) ++s.not_once;
      s.recorded += b.answers.size();
      s.unanswered += b.unanswered;
      for (const auto& a : b.answers)
        s.other_result += std::find(b.results.begin(), b.results.end(), a) == b.results.end();
    }
    return s;
  }

 private:
  struct batch {
    std::size_t requests = 0, unanswered = 0;
    std::vector<std::string> results;  // one per import
    std::vector<std::string> answers;  // what requests that did not import were told
  };
  mutable std::mutex mutex_;
  std::map<std::string, batch> batches_;
};

// ---- the runs -------------------------------------------------------------------------------------

/// Op k of every writer requests batch k, on a store that crashes after COMMIT now and then;
/// `make(tally, options)` gives the strategy, which fills the tally.
template <class MakeStrategy>
runner per_batch(MakeStrategy make) {
  return [make](const std::string& path, const settings& s) {
    using store_t = crashing_store<import_runs_store>;
    auto run_on = [&](const std::string& p, nc::race_options_for<store_t> o) {
      o.keys.clear();  // op b requests batch b, whatever the options' ops
      for (unsigned b = 0; b < o.ops_per_writer; ++b) o.keys.push_back(import_batch(b));
      o.choose_key = [](std::uint32_t, std::uint32_t op, std::uint64_t) { return std::size_t{op}; };
      auto tally = std::make_shared<once_tally>();
      auto report = nc::run_race_per_writer(
          [&](unsigned i) {
            return store_t(import_runs_store(p, import_runs_spec()), 0.2, o.seed * 1000 + i);
          },
          make(tally, o), o);
      return run_result{std::move(report), tally->summary(), {}};
    };
    return run_and_shrink(path, s, options_for<store_t>(s, {}, import_workload(), "import_runs"), run_on);
  };
}

/// The bug: check, then import and insert the record blindly (a duplicate import when two checks
/// pass). A request that finds the record answers with it.
inline runner check_then_insert() {
  return per_batch([](std::shared_ptr<once_tally> tally, const auto&) {
    return [tally](auto& store, const run_key& key, auto& fn) {
      (void)nc::naive_read_modify_write(
          store, key, [&](const std::optional<nc::ledger_entry>& cur) -> nc::update<nc::ledger_entry> {
            if (cur) {
              tally->request(key.text(), once_tally::answer::recorded, body_of(cur->result));  // imported
              return nc::keep;
            }
            nc::ledger_entry record = fn(cur);
            tally->ran(key.text(), body_of(record.result));  // the import itself
            tally->request(key.text(), once_tally::answer::ran);
            return record;
          });
    };
  });
}

/// The fix: idempotency_ledger on import_runs. The first request claims the batch
/// (create_if_absent), imports and records the result (write_if_match); a duplicate finds it in
/// progress, asks again, and gets the recorded result. A crash after COMMIT (indeterminate) is
/// resolved by re-reading and recognising the ledger's own entry.
inline runner idempotency_ledger() {
  return per_batch([](std::shared_ptr<once_tally> tally, const auto& o) {
    // In explore mode a duplicate that waits holds the turn: it sleeps past stall_timeout so
    // that the scheduler hands over to the importer (a stall, as for lock+cas).
    const auto poll = o.mode == nc::race_mode::explore ? o.stall_timeout + o.stall_timeout / 2
                                                       : std::chrono::milliseconds(1);
    auto claims = std::make_shared<std::atomic<unsigned>>(0);
    return [tally, poll, claims](auto& store, const run_key& key, auto& fn) {
      tagged_ledger_store view(store, fn);
      nc::ledger_options lo;
      lo.owner = "importer-W" + std::to_string(store.writer()) + "." + std::to_string(claims->fetch_add(1));
      lo.policy = nc::harness_retry_policy();
      nc::idempotency_ledger<decltype(view)> ledger(view, std::move(lo));
      const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      for (;;) {
        auto r = ledger.run(key.source_id, key.content_hash, [&] {
          std::string result = "bans=1200,importer=" + std::to_string(store.writer());
          tally->ran(key.text(), result);  // the import itself: at most once per batch
          return result;
        });
        if (r.outcome == nc::ledger_outcome::in_progress && std::chrono::steady_clock::now() < give_up_at) {
          std::this_thread::sleep_for(poll);  // another request is importing it: ask again
          continue;
        }
        if (r.outcome == nc::ledger_outcome::ran)
          tally->request(key.text(), once_tally::answer::ran);
        else if (r.outcome == nc::ledger_outcome::already_completed)
          tally->request(key.text(), once_tally::answer::recorded, r.result);
        else
          tally->request(key.text(), once_tally::answer::none);  // in_progress too long, gave_up, ...
        return;
      }
    };
  });
}

}  // namespace demo
