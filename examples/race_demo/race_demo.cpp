// race_demo — five real lost-update bugs (docs/scenarios.md), raced on embedded SQLite by the
// noclobber race harness.
//
// Each scenario is the shape of one real report: object_store_file (the SQLite file kept as one
// object-store object), dirty_flag (the dirty flag cleared after a long wait), env_patch (the
// concurrent disjoint-key env PATCH), cache_refresh (the cache refresh that overwrites an edit) and
// import_retry (the import retried after a crash). Every scenario runs its writers first through
// the naive read-modify-write the report describes, then through the noclobber fix, each on a
// fresh SQLite file with one connection per writer, on the table its service has (inodes, stacks,
// models, import_runs), through typed records (scenarios.hpp). The table shows what each lost
// (and for import_retry, how often each import ran).
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
#include <noclobber/race_harness.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "demo_run.hpp"
#include "scenarios.hpp"

namespace nc = noclobber;
using demo::scenario;

namespace {

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
      nc::race_options<std::string, std::string> probe;
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
std::string once_text(const demo::once_stats& n) {
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
  if (unresolved) s += " " + count_of(unresolved, "was", "were") + " never settled: the writers moved on.";
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
  auto scenarios = demo::make_scenarios();
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
    std::optional<demo::once_stats> once;
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
      s.setup(path);  // the table the service has
      demo::settings run_settings;
      run_settings.writers = a.writers.value_or(s.writers);
      run_settings.ops = a.ops;
      run_settings.mode = a.mode;
      run_settings.seed = a.seed;
      run_settings.schedule = a.schedule;
      run_settings.iterations = a.iterations;
      run_settings.strategy = name;
      // lock + CAS blocks on its key lock outside the harness, and a duplicate import request
      // waits for the one importing: in explore mode hand over quickly.
      if (name == "lock+cas" || name == "idempotency-ledger")
        run_settings.stall_timeout = std::chrono::milliseconds(20);
      // The ledger claims a batch, then records its result: two writes per request, whose
      // at-most-once effect the import tally checks (the checker would call them doubled).
      run_settings.ops_write_in_steps = name == "idempotency-ledger";
      run_settings.replay = a.replay;
      run_settings.shrink = a.shrink;
      run_settings.fresh_path = [&, shrink_no = 0]() mutable {  // each shrink candidate on a fresh file
        const std::string p =
            std::string(dir) + "/" + s.id + "_shrink_" + std::to_string(shrink_no++) + ".db";
        s.setup(p);
        return p;
      };
      demo::run_result result;
      std::chrono::nanoseconds own_time{};
      try {
        result = run(path, run_settings);
        own_time = result.report.elapsed;
        if (!a.json &&
            result.report.mode != nc::race_mode::stress) {  // the strategy's own time: free-running
          demo::settings free = run_settings;
          free.mode = nc::race_mode::stress;
          free.iterations = 1;
          free.writers = result.report.writers;
          free.ops = result.report.ops_per_writer;
          free.replay.clear();
          free.shrink = false;
          const std::string timing_path =
              std::string(dir) + "/" + s.id + "_" + std::to_string(file_no++) + ".db";
          s.setup(timing_path);
          own_time = run(timing_path, free).report.elapsed;
        }
      } catch (const std::invalid_argument& e) {  // options the harness refuses (a plan's writers, ...)
        std::fprintf(stderr, "race_demo: %s\n", e.what());
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
        return 2;
      }
      rows.push_back(
          {&s, name, i == 0, std::move(result.report), result.once, std::move(result.shrunk), own_time});
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
    std::cout << "  " << pad(r.s->id, 19) << r.s->title << " (" << r.s->table << ")\n";
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
