// race_demo — five real lost-update bugs (docs/scenarios.md), raced on embedded SQLite by the
// noclobber race harness.
//
// Each scenario is the shape of one real report: object_store_file (the SQLite file kept as one
// object-store object), dirty_flag (the dirty flag cleared after a long wait), env_patch (the
// concurrent disjoint-key env PATCH), cache_refresh (the cache refresh that overwrites an edit) and
// import_retry (the import retried after a crash). Every scenario runs its writers first through
// the naive read-modify-write the report describes, then through the noclobber fix, each on a
// fresh SQLite file with one connection per writer. The table shows what each lost (and for
// import_retry, how often each import ran).
//
//   race_demo [--scenario NAME] [--strategy NAME] [--writers N] [--ops K]
//             [--mode forced|explore|stress] [--seed S] [--schedule X] [--iterations I]
//             [--replay LINE] [--shrink] [--html] [--json] [--verbose]
//
// `--seed` is the race harness's random seed (key choice, explore schedules), nothing else.
// `--replay` applies a report's replay line (race_options::apply_replay) after the other flags.
// `--shrink` (explore) shrinks every losing run to a minimal one that still loses
// (race_harness/shrink.hpp), each candidate on a fresh SQLite file, and prints both replay lines.
// The first loss always gets its HTML timeline (race_harness/html.hpp), whose path is printed;
// `--html` writes one for every run that lost (and for each shrunk run); a noclobber strategy
// that loses always gets one.
// The time column is each strategy's own: in forced and explore mode the harness makes writers
// wait for each other (a barrier with a timeout, a scheduler), which is not the strategy's work,
// so every row is run a second time free-running (stress mode, a fresh file, the same writers and
// operations) and that run's wall time is shown.
// Exit status: 0 when no noclobber strategy lost an update (nor, in import_retry, imported a batch
// twice or left a duplicate request without the recorded result), 1 otherwise, 2 for bad
// arguments.
#include <noclobber/adapters/sqlite.hpp>
#include <noclobber/idempotency_ledger.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nc = noclobber;
using sqlite_store = nc::sqlite::store;
using options_t = nc::race_options<std::string, std::string>;

namespace {

// ---- a store that crashes between COMMIT and the answer (import_retry) ----------------------

// Wraps one SQLite connection. With probability `p` a write is performed and then reported as
// indeterminate, as if the process had died after COMMIT was sent and was restarted.
class crashing_store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = sqlite_store::token_type;

  crashing_store(const std::string& path, double p, std::uint64_t seed) : db_(path), p_(p), rng_(seed) {}

  nc::read_result<std::string, token_type> read(const std::string& k) { return db_.read(k); }
  nc::write_result<token_type> write_if_match(const std::string& k, const token_type& t,
                                              const std::string& v) {
    return maybe_crash(db_.write_if_match(k, t, v));
  }
  nc::write_result<token_type> create_if_absent(const std::string& k, const std::string& v) {
    return maybe_crash(db_.create_if_absent(k, v));
  }
  nc::write_result<token_type> overwrite(const std::string& k, const std::string& v) {
    return maybe_crash(db_.overwrite(k, v));
  }

 private:
  nc::write_result<token_type> maybe_crash(nc::write_result<token_type> r) {
    if (r.ok() && std::uniform_real_distribution<double>(0, 1)(rng_) < p_) {
      return nc::write_result<token_type>::make_failed(
          nc::write_status::indeterminate, {"crash", "the importer crashed after COMMIT was sent"});
    }
    return r;
  }
  sqlite_store db_;
  double p_;
  std::mt19937_64 rng_;
};

// ---- value shapes: each embeds the harness's tag (after '|') so every write is unique -------

std::string body_of(const std::optional<std::string>& v) {
  if (!v) return {};
  const auto bar = v->rfind('|');
  return bar == std::string::npos ? *v : v->substr(0, bar);
}
std::string with_tag(std::string body, const nc::write_tag& t) {
  return body + "|" + nc::tag_text(t);
}

// "a=1,b=2" <-> map
std::map<std::string, std::string> parse_fields(const std::string& s) {
  std::map<std::string, std::string> m;
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(pos, end - pos);
    const auto eq = item.find('=');
    if (eq != std::string::npos) m[item.substr(0, eq)] = item.substr(eq + 1);
    pos = end + 1;
  }
  return m;
}
std::string join_fields(const std::map<std::string, std::string>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ",") + k + "=" + v;
  return s;
}

nc::race_workload<std::string> workload_of(
    std::function<std::string(const std::string&, const nc::write_tag&)> f) {
  nc::race_workload<std::string> w;
  w.next_value = [f](const std::optional<std::string>& cur, const nc::write_tag& t) {
    return with_tag(f(body_of(cur), t), t);
  };
  w.id_of = [](const std::string& v) { return nc::parse_write_id(v); };
  return w;
}

// ---- import_retry: import batches, their idempotency keys, and what each request got -----------

const std::string import_source = "blocklist:source-7";
// One batch per op: every writer requests the same batches (duplicate requests).
std::string import_key_prefix() {
  return nc::ledger_key(import_source, "");
}
std::string import_key(unsigned batch) {
  return nc::ledger_key(import_source, "sha256:9f2c." + std::to_string(batch));
}

// The idempotency ledger's view of the harness's store: it strips the harness tag from what
// it reads and tags every entry it writes (from the harness's value function), so the harness
// records and checks the ledger's writes like any other strategy's.
template <class Store, class Fn>
class tagged_ledger_store {
 public:
  using key_type = std::string;
  using value_type = std::string;
  using token_type = typename Store::token_type;

  tagged_ledger_store(Store& store, Fn& fn) : store_(store), fn_(fn) {}

  nc::read_result<std::string, token_type> read(const std::string& k) {
    auto r = store_.read(k);
    if (r.found()) {
      seen_ = r.value;
      r.value = body_of(r.value);
    } else if (r.absent()) {
      seen_.reset();
    }
    return r;
  }
  nc::write_result<token_type> write_if_match(const std::string& k, const token_type& t,
                                              const std::string& entry) {
    return store_.write_if_match(k, t, tagged(entry, seen_));
  }
  nc::write_result<token_type> create_if_absent(const std::string& k, const std::string& entry) {
    return store_.create_if_absent(k, tagged(entry, std::nullopt));
  }

 private:
  std::string tagged(const std::string& entry, const std::optional<std::string>& read) {
    const std::string made = fn_(read);  // unique, and carries the write id the harness checks
    return entry + made.substr(made.rfind('|'));
  }
  Store& store_;
  Fn& fn_;
  std::optional<std::string> seen_;  // the last value read, tag included
};

// What the import requests got: how often each batch was imported, and each answer.
struct once_stats {
  std::size_t requests = 0, imports = 0, runs = 0, duplicate_runs = 0, recorded = 0, unanswered = 0;
  std::size_t other_result = 0;  // an answer that no import of that batch produced
  std::size_t not_once = 0;      // batches imported more than once, or never
  // Exactly one import per batch, and every other request got that import's result.
  [[nodiscard]] bool ok() const { return not_once == 0 && unanswered == 0 && other_result == 0; }
};

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

// ---- scenarios ------------------------------------------------------------------------------

struct run_result {
  nc::race_report report;
  std::optional<once_stats> once;  // import_retry: the import requests
};
using runner = std::function<run_result(const std::string& path, const options_t&)>;

struct scenario {
  std::string id;     // what --scenario takes: object_store_file, dirty_flag, ...
  std::string alias;  // the number earlier versions of the demo took (000 … 004)
  std::string title;  // the plain name of the real bug (docs/scenarios.md)
  unsigned writers = 8;
  std::string key;
  std::string initial;        // written before the run when not empty
  std::string unknown_cause;  // why writes here may end with an unknown outcome (empty: no reason)
  nc::race_workload<std::string> workload;
  std::vector<std::pair<std::string, runner>> strategies;  // the first is the naive one
};

scenario named(std::string id, std::string alias, std::string title, unsigned writers, std::string key,
               std::string initial = {}) {
  scenario s;
  s.id = std::move(id);
  s.alias = std::move(alias);
  s.title = std::move(title);
  s.writers = writers;
  s.key = std::move(key);
  s.initial = std::move(initial);
  return s;
}

template <class Strategy>
runner on_sqlite(Strategy s) {
  return [s](const std::string& path, const options_t& o) {
    return run_result{nc::run_race_per_writer([&path](unsigned) { return sqlite_store(path); }, s, o), {}};
  };
}

// import_retry: op k of every writer requests import batch k, on a store that crashes after
// COMMIT now and then; `make(tally, options)` gives the strategy, which fills the tally.
template <class MakeStrategy>
runner per_batch(MakeStrategy make) {
  return [make](const std::string& path, const options_t& base) {
    options_t o = base;
    o.keys.clear();
    for (unsigned b = 0; b < o.ops_per_writer; ++b) o.keys.push_back(import_key(b));
    o.choose_key = [](std::uint32_t, std::uint32_t op, std::uint64_t) { return std::size_t{op}; };
    auto tally = std::make_shared<once_tally>();
    auto report = nc::run_race_per_writer(
        [&](unsigned i) { return crashing_store(path, 0.2, o.seed * 1000 + i); }, make(tally, o), o);
    return run_result{std::move(report), tally->summary()};
  };
}

std::vector<scenario> make_scenarios() {
  std::vector<scenario> all;

  {  // A location's SQLite DB kept as one object; store() appends rows.
    scenario s = named("object_store_file", "000", "the SQLite file kept as one object-store object", 8,
                       "locations/42.db");
    s.workload = nc::append_workload(64);
    s.strategies = {{"naive", on_sqlite(nc::naive_strategy{})},
                    {"cas", on_sqlite(nc::cas_strategy{})},
                    {"lock+cas", on_sqlite(nc::locked_cas_strategy<std::string>{})}};
    all.push_back(std::move(s));
  }
  {  // Users set dirty_since; push workers clear it after a long wait.
    scenario s = named("dirty_flag", "001", "the dirty flag cleared after a long wait", 8,
                       "inode/7/dirty_since", "clean");
    s.workload = workload_of([](const std::string&, const nc::write_tag& t) {
      return t.writer % 2 ? "dirty_since=" + std::to_string(1715760000000ULL + t.writer * 1000 + t.op)
                          : std::string("clean");
    });
    // The fix: a worker clears only if the flag still holds what it saw when it claimed the job.
    auto compare_and_clear = [](auto& store, const std::string& key, auto& fn) {
      const bool worker = store.writer() % 2 == 0;
      const auto claimed = store.read(key);  // the snapshot at claim time (then: push, wait)
      (void)nc::read_modify_write(
          store, key,
          [&](const std::optional<std::string>& cur) -> nc::update<std::string> {
            if (worker && (!cur || !claimed.found() || *cur != claimed.value)) return nc::keep;
            return fn(cur);
          },
          nc::harness_retry_policy());
    };
    s.strategies = {{"naive", on_sqlite(nc::naive_strategy{})},
                    {"compare-and-clear", on_sqlite(compare_and_clear)}};
    all.push_back(std::move(s));
  }
  {  // 16 concurrent PATCHes of disjoint keys into one env map.
    scenario s = named("env_patch", "002", "the concurrent disjoint-key env PATCH", 16, "stacks/web/env");
    s.workload = workload_of([](const std::string& body, const nc::write_tag& t) {
      auto m = parse_fields(body);
      m["K" + std::to_string(t.writer)] = std::to_string(t.op);
      return join_fields(m);
    });
    s.strategies = {{"naive", on_sqlite(nc::naive_strategy{})},
                    {"cas", on_sqlite(nc::cas_strategy{})},
                    {"lock+cas", on_sqlite(nc::locked_cas_strategy<std::string>{})}};
    all.push_back(std::move(s));
  }
  {  // A read path refreshes a cache inside the model while users edit the model.
    scenario s = named("cache_refresh", "003", "the cache refresh that overwrites an edit", 8, "models/qb",
                       "description=initial,columns=none");
    s.workload = workload_of([](const std::string& body, const nc::write_tag& t) {
      auto m = parse_fields(body);
      if (t.writer % 2)
        m["description"] = "edit" + std::to_string(t.writer) + "." + std::to_string(t.op);
      else
        m["columns"] = "cache" + std::to_string(t.writer) + "." + std::to_string(t.op);
      return join_fields(m);
    });
    // The fix: editors use CAS; the cache refresh is a patch against the revision it loaded,
    // dropped when the model moved (the next read refreshes again).
    auto patch_or_drop = [](auto& store, const std::string& key, auto& fn) {
      if (store.writer() % 2) {
        (void)nc::read_modify_write(store, key, fn, nc::harness_retry_policy());
        return;
      }
      const auto loaded = store.read(key);
      if (!loaded.found()) return;
      (void)nc::patch_if_unchanged(
          store, key, loaded.token, [&](std::string& model) { model = fn(model); }, nc::patch_conflict::drop,
          nc::harness_retry_policy());
    };
    s.strategies = {{"naive", on_sqlite(nc::naive_strategy{})}, {"patch-or-drop", on_sqlite(patch_or_drop)}};
    all.push_back(std::move(s));
  }
  {  // Duplicate import requests, retried after crashes; one idempotency key per batch.
    scenario s = named("import_retry", "004", "the import retried after a crash", 8, import_key(0));
    s.unknown_cause = "the importer crashed after sending COMMIT";
    s.workload = workload_of([](const std::string&, const nc::write_tag& t) {
      return "completed,bans=1200,importer=" + std::to_string(t.writer);
    });
    // The bug: check, then import and insert the record blindly (a duplicate import when two
    // checks pass). A request that finds the record answers with it.
    auto check_then_insert = [](std::shared_ptr<once_tally> tally, const options_t&) {
      return [tally](auto& store, const std::string& key, auto& fn) {
        (void)nc::naive_read_modify_write(
            store, key, [&](const std::optional<std::string>& cur) -> nc::update<std::string> {
              if (cur) {
                tally->request(key, once_tally::answer::recorded, body_of(cur));  // already imported
                return nc::keep;
              }
              std::string record = fn(cur);
              tally->ran(key, body_of(record));  // the import itself
              tally->request(key, once_tally::answer::ran);
              return record;
            });
      };
    };
    // The fix: idempotency_ledger on the same SQLite store. The first request
    // claims the batch (create_if_absent), imports and records the result (write_if_match);
    // a duplicate finds it in progress, asks again, and gets the recorded result. A crash after
    // COMMIT (indeterminate) is resolved by re-reading and recognising the ledger's own entry.
    auto ledger = [](std::shared_ptr<once_tally> tally, const options_t& o) {
      // In explore mode a duplicate that waits holds the turn: it sleeps past stall_timeout so
      // that the scheduler hands over to the importer (a stall, as for lock+cas).
      const auto poll = o.mode == nc::race_mode::explore ? o.stall_timeout + o.stall_timeout / 2
                                                         : std::chrono::milliseconds(1);
      auto claims = std::make_shared<std::atomic<unsigned>>(0);
      return [tally, poll, claims](auto& store, const std::string& key, auto& fn) {
        tagged_ledger_store view(store, fn);
        nc::ledger_options lo;
        lo.owner = "importer-W" + std::to_string(store.writer()) + "." + std::to_string(claims->fetch_add(1));
        lo.policy = nc::harness_retry_policy();
        nc::idempotency_ledger<decltype(view)> ledger(view, std::move(lo));
        const std::string hash = key.substr(import_key_prefix().size());
        const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
          auto r = ledger.run(import_source, hash, [&] {
            std::string result = "bans=1200,importer=" + std::to_string(store.writer());
            tally->ran(key, result);  // the import itself: at most once per batch
            return result;
          });
          if (r.outcome == nc::ledger_outcome::in_progress && std::chrono::steady_clock::now() < give_up_at) {
            std::this_thread::sleep_for(poll);  // another request is importing it: ask again
            continue;
          }
          if (r.outcome == nc::ledger_outcome::ran)
            tally->request(key, once_tally::answer::ran);
          else if (r.outcome == nc::ledger_outcome::already_completed)
            tally->request(key, once_tally::answer::recorded, r.result);
          else
            tally->request(key, once_tally::answer::none);  // in_progress too long, gave_up, ...
          return;
        }
      };
    };
    s.strategies = {{"naive", per_batch(check_then_insert)}, {"idempotency-ledger", per_batch(ledger)}};
    all.push_back(std::move(s));
  }
  return all;
}

// ---- command line ---------------------------------------------------------------------------

struct args {
  std::optional<unsigned> writers;
  unsigned ops = 5;
  nc::race_mode mode = nc::race_mode::forced;
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> schedule;
  unsigned iterations = 10;
  std::string scenario, strategy, replay;
  bool json = false, verbose = false, help = false, shrink = false, html = false;
};

void usage(std::FILE* to, const std::vector<scenario>& scenarios) {
  std::fprintf(to,
               "usage: race_demo [--scenario NAME] [--strategy NAME] [--writers N] [--ops K]\n"
               "                 [--mode forced|explore|stress] [--seed S] [--schedule X] [--iterations I]\n"
               "                 [--replay LINE] [--shrink] [--html] [--json] [--verbose]\n"
               "Races five real lost-update bugs on embedded SQLite: naive read-modify-write against\n"
               "noclobber's fix. --seed is the race harness's random seed. Scenarios (docs/scenarios.md):\n");
  for (const scenario& s : scenarios) {
    std::string strategies;
    for (const auto& st : s.strategies) strategies += (strategies.empty() ? "" : ", ") + st.first;
    std::fprintf(to, "  %-18s %s\n  %-18s   strategies: %s\n", s.id.c_str(), s.title.c_str(), "",
                 strategies.c_str());
  }
}

std::uint64_t number(const std::string& flag, const char* text, std::uint64_t min, std::uint64_t max) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max || text[0] == '-') {
    throw std::invalid_argument(flag + " " + text + ": expected a number in " + std::to_string(min) + " … " +
                                std::to_string(max));
  }
  return v;
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) throw std::invalid_argument(flag + ": missing value");
      return argv[++i];
    };
    if (flag == "--writers")
      a.writers = static_cast<unsigned>(number(flag, value(), 1, 256));
    else if (flag == "--ops")
      a.ops = static_cast<unsigned>(number(flag, value(), 1, 100000));
    else if (flag == "--mode")
      a.mode = nc::parse_race_mode(value());
    else if (flag == "--seed")
      a.seed = number(flag, value(), 0, UINT64_MAX);
    else if (flag == "--schedule")
      a.schedule = number(flag, value(), 0, UINT64_MAX);
    else if (flag == "--iterations")
      a.iterations = static_cast<unsigned>(number(flag, value(), 1, 10000));
    else if (flag == "--scenario")
      a.scenario = value();
    else if (flag == "--strategy")
      a.strategy = value();
    else if (flag == "--replay") {
      a.replay = value();
      options_t probe;
      probe.apply_replay(a.replay);  // a malformed line is refused here, with the other flags
    } else if (flag == "--shrink")
      a.shrink = true;
    else if (flag == "--html")
      a.html = true;
    else if (flag == "--json")
      a.json = true;
    else if (flag == "--verbose")
      a.verbose = true;
    else if (flag == "--help" || flag == "-h") {
      a.help = true;
    } else {
      throw std::invalid_argument("unknown option '" + flag + "'");
    }
  }
  return a;
}

// "40 requests for 5 imports: 5 runs, 0 duplicate, 35 got the recorded result"
std::string once_text(const once_stats& n) {
  std::string s = std::to_string(n.requests) + " requests for " + std::to_string(n.imports) +
                  " imports: " + std::to_string(n.runs) + " runs, " + std::to_string(n.duplicate_runs) +
                  " duplicate, " + std::to_string(n.recorded) + " got the recorded result";
  if (n.unanswered) s += ", " + std::to_string(n.unanswered) + " unanswered";
  if (n.other_result) s += ", " + std::to_string(n.other_result) + " got another result";
  return s;
}

// "1 write", "3 writes".
std::string count_of(std::size_t n, const std::string& singular, const std::string& plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

// The unknown outcomes of one run, in words: how many, why, whether they landed, how each was
// settled. Empty when there were none.
std::string unknown_text(const nc::race_check& c, const std::string& cause) {
  if (c.unknown == 0) return {};
  std::size_t wrote_again = 0, read_back = 0;
  for (const auto& w : c.indeterminate) {
    wrote_again += w.how == nc::unknown_resolution::later_attempt;
    read_back += w.how == nc::unknown_resolution::read_back;
  }
  const std::size_t unresolved = c.indeterminate_unresolved();
  std::string s = count_of(c.unknown, "write ended", "writes ended") + " without a usable answer";
  if (!cause.empty()) s += " (" + cause + ")";
  s += ": the writer could not know whether " + std::string(c.unknown == 1 ? "it" : "each") +
       " had been applied. " +
       (c.unknown == 1 ? std::string(c.unknown_landed ? "It had" : "It had not") + "."
                       : std::to_string(c.unknown_landed) + " had, " +
                             std::to_string(c.unknown - c.unknown_landed) + " had not.");
  if (c.unknown == 1) {  // one write: say how its writer settled it
    if (read_back) s += " The writer settled it by reading the key back.";
    if (wrote_again) s += " The writer settled it by writing again.";
    if (unresolved) s += " The writer never settled it: it moved on.";
    return s;
  }
  if (read_back) s += " " + count_of(read_back, "was", "were") + " settled by reading the key back.";
  if (wrote_again) s += " " + count_of(wrote_again, "was", "were") + " settled by writing again.";
  if (unresolved) s += " " + count_of(unresolved, "was", "were") + " never settled: the writer moved on.";
  return s;
}

std::string ms_text(std::chrono::nanoseconds d) {
  char ms[32];
  const double v = static_cast<double>(d.count()) / 1e6;
  std::snprintf(ms, sizeof ms, v < 10 ? "%.1f ms" : "%.0f ms", v);
  return ms;
}

std::string pad(std::string s, std::size_t width) {
  // Width in characters, counting UTF-8 continuation bytes as nothing.
  std::size_t shown = 0;
  for (unsigned char c : s) shown += (c & 0xC0) != 0x80;
  if (shown < width) s.append(width - shown, ' ');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  auto scenarios = make_scenarios();
  args a;
  try {
    a = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "race_demo: %s\n", e.what());
    usage(stderr, scenarios);
    return 2;
  }
  if (a.help) {
    usage(stdout, scenarios);
    return 0;
  }
  if (!a.scenario.empty()) {
    std::string names;
    for (const scenario& s : scenarios) names += (names.empty() ? "" : ", ") + s.id;
    std::erase_if(scenarios, [&](const scenario& s) { return s.id != a.scenario && s.alias != a.scenario; });
    if (scenarios.empty()) {
      std::fprintf(stderr, "race_demo: --scenario %s: no such scenario (%s)\n", a.scenario.c_str(),
                   names.c_str());
      return 2;
    }
  }

  char dir_template[] = "/tmp/noclobber_race_demo_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) {
    std::perror("race_demo: mkdtemp");
    return 1;
  }

  struct row {
    const scenario* s;
    std::string strategy;
    bool naive;
    nc::race_report report;
    std::optional<once_stats> once;
    std::optional<nc::shrink_result> shrunk;
    std::chrono::nanoseconds own_time;  // the strategy's wall time, free-running (see the overview)
  };
  std::vector<row> rows;
  int file_no = 0;
  bool strategy_found = a.strategy.empty();
  for (const scenario& s : scenarios) {
    for (std::size_t i = 0; i < s.strategies.size(); ++i) {
      const auto& [name, run] = s.strategies[i];
      if (!a.strategy.empty() && name != a.strategy) continue;
      strategy_found = true;
      const std::string path = std::string(dir) + "/" + s.id + "_" + std::to_string(file_no++) + ".db";
      const std::string timing_path = std::string(dir) + "/" + s.id + "_" + std::to_string(file_no++) + ".db";
      if (!s.initial.empty()) {
        for (const std::string& p : {path, timing_path}) {
          sqlite_store db(p);
          (void)db.create_if_absent(s.key, s.initial);
        }
      }
      options_t o;
      o.writers = a.writers.value_or(s.writers);
      o.ops_per_writer = a.ops;
      o.mode = a.mode;
      o.seed = a.seed;
      o.schedule = a.schedule;
      o.iterations = a.iterations;
      o.keys = {s.key};
      o.workload = s.workload;
      o.store_name = "sqlite";
      o.strategy_name = name;
      o.barrier_timeout = std::chrono::milliseconds(300);
      // lock + CAS blocks on its key lock outside the harness, and a duplicate import request
      // waits for the one importing: in explore mode hand over quickly.
      if (name == "lock+cas" || name == "idempotency-ledger") o.stall_timeout = std::chrono::milliseconds(20);
      // The ledger claims a batch, then records its result: two writes per request, whose
      // at-most-once effect the import tally checks (the checker would call them doubled).
      o.ops_write_in_steps = name == "idempotency-ledger";
      if (!a.replay.empty()) o.apply_replay(a.replay);
      run_result result;
      std::chrono::nanoseconds own_time{};
      try {
        result = run(path, o);
        own_time = result.report.elapsed;
        if (!a.json && o.mode != nc::race_mode::stress) {  // the strategy's own time: free-running
          options_t free = o;
          free.mode = nc::race_mode::stress;
          free.iterations = 1;
          own_time = run(timing_path, free).report.elapsed;
        }
      } catch (const std::invalid_argument& e) {  // options the harness refuses (a plan's writers, ...)
        std::fprintf(stderr, "race_demo: %s\n", e.what());
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
        return 2;
      }
      std::optional<nc::shrink_result> shrunk;
      if (a.shrink && o.mode == nc::race_mode::explore && result.report.lost() > 0) {
        // Each candidate on a fresh file, so that what one run left behind never decides the next.
        const runner& run_scenario = s.strategies[i].second;  // (clang 14 captures no structured binding)
        auto fresh_run = [&, shrink_no = 0](const options_t& so) mutable {
          const std::string p =
              std::string(dir) + "/" + s.id + "_shrink_" + std::to_string(shrink_no++) + ".db";
          if (!s.initial.empty()) {
            sqlite_store db(p);
            (void)db.create_if_absent(s.key, s.initial);
          }
          auto report = run_scenario(p, so).report;
          for (const char* suffix : {"", "-wal", "-shm"}) std::remove((p + suffix).c_str());
          return report;
        };
        shrunk = nc::shrink_race_with(fresh_run, o, result.report);
      }
      rows.push_back({&s, name, i == 0, std::move(result.report), result.once, std::move(shrunk), own_time});
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!strategy_found) {
    std::fprintf(stderr, "race_demo: --strategy %s: no scenario has it\n", a.strategy.c_str());
    return 2;
  }

  bool fix_lost = false, naive_lost = false, naive_ran = false, fix_ran = false;
  for (const row& r : rows) {
    if (r.naive) {
      naive_ran = true;
      naive_lost = naive_lost || r.report.lost() > 0;
    } else {
      fix_ran = true;
      fix_lost = fix_lost || !r.report.ok() || (r.once && !r.once->ok());
    }
  }

  if (a.json) {
    std::string out = "[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i) out += ",\n ";
      out += "{\"scenario\":" + nc::detail::json_escape(rows[i].s->id) +
             ",\"title\":" + nc::detail::json_escape(rows[i].s->title) +
             ",\"report\":" + rows[i].report.to_json();
      if (const auto& sh = rows[i].shrunk) {
        out += ",\"shrink\":{\"original\":" + nc::detail::json_escape(sh->original_replay) +
               ",\"shrunk\":" + nc::detail::json_escape(sh->shrunk_replay) +
               ",\"runs\":" + std::to_string(sh->runs) +
               ",\"confirmed_losing\":" + std::to_string(sh->confirmed_losing) +
               ",\"confirmations\":" + std::to_string(sh->confirmations) + "}";
      }
      if (const auto& n = rows[i].once) {
        out += ",\"idempotency\":{\"requests\":" + std::to_string(n->requests) +
               ",\"imports\":" + std::to_string(n->imports) + ",\"runs\":" + std::to_string(n->runs) +
               ",\"duplicate_runs\":" + std::to_string(n->duplicate_runs) +
               ",\"recorded_result\":" + std::to_string(n->recorded) +
               ",\"unanswered\":" + std::to_string(n->unanswered) +
               ",\"other_result\":" + std::to_string(n->other_result) +
               ",\"once\":" + (n->ok() ? "true" : "false") + "}";
      }
      out += "}";
    }
    std::cout << out << "]\n";
    return fix_lost ? 1 : 0;
  }

  std::cout << "noclobber race demo: embedded SQLite (one connection per writer), mode "
            << nc::to_string(a.mode) << ", random seed " << a.seed << "\n\n";
  // The scenarios shown, by the name --scenario takes, then one row per strategy.
  const scenario* listed = nullptr;
  for (const row& r : rows) {
    if (r.s == listed) continue;
    listed = r.s;
    std::cout << "  " << pad(r.s->id, 19) << r.s->title << "\n";
  }
  std::cout << "\n"
            << pad("scenario", 19) << pad("strategy", 20) << pad("writers", 9) << pad("operations", 12)
            << pad("lost", 7) << pad("retries", 9) << "time\n";
  bool any_unknown = false, any_turns = false;
  for (const row& r : rows) {
    const auto& rep = r.report;
    const std::string ms = ms_text(r.own_time);
    std::string note;
    if (rep.writers_serialised) {
      note += " (writers took turns)";
      any_turns = true;
    }
    if (rep.check.unknown) {
      note += " (" + count_of(rep.check.unknown, "unknown outcome", "unknown outcomes") + ", see below)";
      any_unknown = true;
    }
    if (rep.op_errors) note += " (" + count_of(rep.op_errors, "error", "errors") + ")";
    if (r.once) note += " (" + once_text(*r.once) + ")";
    std::cout << pad(r.s->id, 19) << pad(r.strategy, 20) << pad(std::to_string(rep.writers), 9)
              << pad(std::to_string(rep.operations), 12) << pad(std::to_string(rep.lost()), 7)
              << pad(std::to_string(rep.retries), 9) << (note.empty() ? std::string(ms) : pad(ms, 10) + note)
              << "\n";
  }
  if (a.mode == nc::race_mode::stress) {
    std::cout << "\ntime: each strategy's wall time for these writers and operations.\n";
  } else {
    std::cout << "\ntime: each strategy's own wall time for these writers and operations, from a second,\n"
                 "free-running run (the "
              << nc::to_string(a.mode)
              << " run's waits for the other writers are not the strategy's work).\n";
  }
  if (any_turns) {
    std::cout << "writers took turns: the strategy holds a lock from read to write, so the forced window\n"
                 "could not make the writers overlap; they ran one after another and none could lose.\n";
  }
  if (any_unknown) {
    std::cout << "\nunknown outcomes:\n";
    for (const row& r : rows) {
      const std::string text = unknown_text(r.report.check, r.s->unknown_cause);
      if (!text.empty()) std::cout << "  " << r.s->id << " / " << r.strategy << ": " << text << "\n";
    }
  }
  // One loss, shown in full: the trace, how to replay it, and its timeline.
  const row* first_loss = nullptr;
  for (const row& r : rows) {
    if (r.report.lost() == 0) continue;
    const auto& l = r.report.check.lost.front();
    std::cout << "\nfirst loss in " << r.s->id << " / " << r.strategy << ": W" << l.lost.writer << " op "
              << l.lost.op << " was overwritten by W" << l.overwritten_by.writer << " op "
              << l.overwritten_by.op << "\n  " << r.report.trace << "\n  replay: race_demo --scenario "
              << r.s->id << " --strategy " << r.strategy << " --mode " << nc::to_string(r.report.mode)
              << " --seed " << r.report.seed << " --writers " << r.report.writers << " --ops "
              << r.report.ops_per_writer;
    if (r.report.schedule_seed) std::cout << " --schedule " << *r.report.schedule_seed;
    std::cout << "\n  timeline: " << nc::write_html(r.report).string() << "\n";
    first_loss = &r;
    break;
  }
  // Each shrunk run: how far it shrank, and both replay lines as demo commands.
  for (const row& r : rows) {
    if (!r.shrunk) continue;
    const std::string command =
        "race_demo --scenario " + r.s->id + " --strategy " + r.strategy + " --replay '";
    std::string text = r.shrunk->to_text();
    for (const char* label : {"original: ", "shrunk:   "}) {
      const auto at = text.find(label);
      if (at != std::string::npos) {
        const auto end = text.find('\n', at);
        text.insert(end, "'");
        text.insert(at + std::strlen(label), command);
      }
    }
    std::cout << "\n" << r.s->id << " / " << r.strategy << " " << text;
  }
  // Timelines: of every losing run with --html, and always of a noclobber strategy that lost.
  for (const row& r : rows) {
    const bool failed_fix = !r.naive && !r.report.ok();
    if (!failed_fix && !(a.html && r.report.lost() > 0)) continue;
    if (&r != first_loss) {  // the first loss's timeline is printed with it
      std::cout << "\ntimeline of " << r.s->id << " / " << r.strategy << ": "
                << nc::write_html(r.report).string() << "\n";
    }
    if (a.html && r.shrunk)
      std::cout << "timeline of its shrunk run: " << nc::write_html(r.shrunk->shrunk).string() << "\n";
  }
  if (a.verbose) {
    for (const row& r : rows) {
      std::cout << "\n" << r.s->id << ": " << r.s->title << "\n" << r.report.to_text();
      if (r.once) std::cout << "  import requests: " << once_text(*r.once) << "\n";
    }
  }
  std::cout << "\n";
  if (fix_lost) {
    std::cout
        << "FAILED: a noclobber strategy lost updates, or imported a batch twice (run with --verbose for "
           "the reports)\n";
  } else if (!fix_ran) {
    std::cout << (naive_lost ? "naive read-modify-write lost updates (no noclobber strategy was run).\n"
                             : "naive read-modify-write happened not to lose updates this time (try --mode "
                               "forced).\n");
  } else if (naive_ran && !naive_lost) {
    std::cout
        << "noclobber lost nothing; the naive runs happened not to collide this time (try --mode forced)\n";
  } else if (!naive_ran) {
    std::cout << "every noclobber strategy lost none.\n";
  } else {
    std::cout << "naive read-modify-write lost updates; every noclobber strategy lost none.\n";
  }
  return fix_lost ? 1 : 0;
}
