// The checker's fault verdicts (race_harness/checker.hpp, phase classify_faults), each on a
// hand-made history and told apart from its neighbours: a loss to a stale read stays `lost`; an
// acknowledged write the store forgot is `vanished` (not lost); an update on the final chain twice
// is `doubled`; unknown outcomes are listed with whether they landed and how their writer went on.
// Then the same verdicts from real runs: a store that answers "transient" for a write it applied
// makes read_modify_write apply updates twice, and the report says so with a trace.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <string>

namespace nc = noclobber;

namespace {

nc::race_write wr(std::uint32_t writer, std::uint32_t op, nc::write_id read_from, nc::write_id written,
                  nc::op_outcome o, std::uint64_t tick, std::uint32_t attempt = 1) {
  nc::race_write w;
  w.writer = writer;
  w.op = op;
  w.attempt = attempt;
  w.read_from = read_from;
  w.written = written;
  w.outcome = o;
  w.invoke = tick;
  w.complete = tick + 1;
  return w;
}

/// `w` as a write_if_match conditional on `expected` (race_write::expected).
nc::race_write conditional(nc::race_write w, nc::write_id expected) {
  w.kind = nc::write_kind::write_if_match;
  w.expected = expected;
  return w;
}

nc::race_read rd(std::uint32_t writer, std::uint32_t op, nc::write_id version, std::uint64_t tick) {
  nc::race_read r;
  r.writer = writer;
  r.op = op;
  r.version = version;
  r.found = version != 0;
  r.invoke = tick;
  r.complete = tick + 1;
  return r;
}

}  // namespace

TEST_CASE("checker: an acknowledged write the store forgot is vanished, not lost to a stale read",
          "[race_harness][checker][faults]") {
  const auto a = nc::make_write_id(1, 9, 1), b = nc::make_write_id(2, 9, 1), c = nc::make_write_id(3, 9, 1);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};

  SECTION("a failover forgot W1's write: W2 read the state from before it after the acknowledgement") {
    // W1 writes a from v0 (acknowledged at tick 2); the store fails over; W2 reads v0 at tick 10
    // and writes b from it; W3 reads b and writes c.
    h.writes = {wr(1, 0, 0, a, nc::op_outcome::ok, 1), wr(2, 0, 0, b, nc::op_outcome::ok, 11),
                wr(3, 0, b, c, nc::op_outcome::ok, 21)};
    h.reads = {rd(1, 0, 0, 0), rd(2, 0, 0, 10), rd(3, 0, b, 20)};
    h.final_versions = {c};
    const auto check = nc::check_race_history(h);
    REQUIRE(check.vanished.size() == 1);
    CHECK(check.vanished[0].write.writer == 1);
    CHECK_THAT(check.vanished[0].trace,
               Catch::Contains("W2 op 0 read the key's state before the run at tick 10") &&
                   Catch::Contains("acknowledged at tick 2"));
    CHECK(check.lost.empty());
    CHECK_FALSE(check.ok());
  }
  SECTION("the key ends at a version the acknowledged write replaced") {
    h.writes = {wr(1, 0, 0, a, nc::op_outcome::ok, 1), wr(2, 0, a, b, nc::op_outcome::ok, 3)};
    h.reads = {rd(1, 0, 0, 0), rd(2, 0, a, 2)};
    h.final_versions = {a};  // W2's b is gone: the store rolled back to a
    const auto check = nc::check_race_history(h);
    REQUIRE(check.vanished.size() == 1);
    CHECK(check.vanished[0].write.writer == 2);
    CHECK_THAT(check.vanished[0].trace, Catch::Contains("the key ends at version " + std::to_string(a)));
    CHECK(check.lost.empty());
  }
  SECTION("a stale-read loss stays lost: every read after the acknowledgement saw newer versions") {
    // W1 and W2 both read v0 before either wrote; W1 writes a, W2 overwrites with b (blind).
    h.writes = {wr(1, 0, 0, a, nc::op_outcome::ok, 3), wr(2, 0, 0, b, nc::op_outcome::ok, 5)};
    h.reads = {rd(1, 0, 0, 1), rd(2, 0, 0, 2), rd(3, 0, a, 4), rd(3, 1, b, 7)};
    h.final_versions = {b};
    const auto check = nc::check_race_history(h);
    REQUIRE(check.lost.size() == 1);
    CHECK(check.lost[0].lost.writer == 1);
    CHECK(check.lost[0].overwritten_by.writer == 2);
    CHECK(check.vanished.empty());
  }
  SECTION("a read of the old version that began before the acknowledgement is no evidence") {
    h.writes = {wr(1, 0, 0, a, nc::op_outcome::ok, 3), wr(2, 0, 0, b, nc::op_outcome::ok, 6)};
    h.reads = {rd(2, 0, 0, 2)};  // began at tick 2, before W1's write completed at tick 4
    h.final_versions = {b};
    const auto check = nc::check_race_history(h);
    CHECK(check.lost.size() == 1);
    CHECK(check.vanished.empty());
  }

  // Failover to a replica that lacked W1's write: W2 read v0 on the old primary before W1 wrote,
  // and its update conditional on v0, sent after W1's acknowledgement, applied on the new
  // primary. No read after the acknowledgement saw v0: the conditional write is the evidence.
  SECTION("an update conditional on the replaced version, applied after the acknowledgement, is evidence") {
    // (W1's own condition unknown: only the timing is evidence here.)
    h.writes = {conditional(wr(1, 0, 0, a, nc::op_outcome::ok, 3), nc::unknown_version),
                conditional(wr(2, 0, 0, b, nc::op_outcome::ok, 6), 0),
                conditional(wr(3, 0, b, c, nc::op_outcome::ok, 9), b)};
    h.reads = {rd(1, 0, 0, 1), rd(2, 0, 0, 2), rd(3, 0, b, 8)};
    h.final_versions = {c};
    const auto check = nc::check_race_history(h);
    REQUIRE(check.vanished.size() == 1);
    CHECK(check.vanished[0].write.writer == 1);
    CHECK_THAT(
        check.vanished[0].trace,
        Catch::Contains("W2 op 0 wrote conditionally on the key's state before the run (applied), sent at "
                        "tick 6") &&
            Catch::Contains("acknowledged at tick 4"));
    CHECK(check.lost.empty());
    CHECK_FALSE(check.ok());
  }
  SECTION("the same, a version below: the new primary held an older version still") {
    // W1: v0 -> a, W2: a -> b (both acknowledged), then W3's update conditional on v0 applied.
    h.writes = {conditional(wr(1, 0, 0, a, nc::op_outcome::ok, 2), 0),
                conditional(wr(2, 0, a, b, nc::op_outcome::ok, 5), a),
                conditional(wr(3, 0, 0, c, nc::op_outcome::ok, 8), 0)};
    h.reads = {rd(1, 0, 0, 0), rd(3, 0, 0, 1), rd(2, 0, a, 4)};
    h.final_versions = {c};
    const auto check = nc::check_race_history(h);
    CHECK(check.vanished.size() == 2);
    CHECK(check.lost.empty());
  }
  SECTION("a strategy that computes from a stale read but conditions on a fresh one stays lost") {
    // W2 read v0, then a (W1's), computed from v0 and sent its update conditional on a.
    h.writes = {conditional(wr(1, 0, 0, a, nc::op_outcome::ok, 2), 0),
                conditional(wr(2, 0, 0, b, nc::op_outcome::ok, 6), a)};
    h.reads = {rd(1, 0, 0, 0), rd(2, 0, 0, 1), rd(2, 0, a, 4)};
    h.final_versions = {b};
    const auto check = nc::check_race_history(h);
    REQUIRE(check.lost.size() == 1);
    CHECK(check.lost[0].lost.writer == 1);
    CHECK(check.vanished.empty());
  }
  SECTION(
      "a conditional update sent before the acknowledgement, a refused one, or one with no known "
      "condition is no evidence") {
    nc::race_write early = conditional(wr(2, 0, 0, b, nc::op_outcome::ok, 3), 0);  // sent at 3, W1 done at 4
    nc::race_write blind = wr(2, 0, 0, b, nc::op_outcome::ok, 6);                  // overwrite
    blind.kind = nc::write_kind::overwrite;
    nc::race_write unmatched = conditional(wr(2, 0, 0, b, nc::op_outcome::ok, 6), nc::unknown_version);
    for (const nc::race_write& w2 : {early, blind, unmatched}) {
      h.writes = {conditional(wr(1, 0, 0, a, nc::op_outcome::ok, 3), nc::unknown_version), w2,
                  conditional(wr(3, 0, 0, c, nc::op_outcome::failed, 8), 0)};  // refused: no evidence
      h.reads = {rd(1, 0, 0, 1), rd(2, 0, 0, 2)};
      h.final_versions = {b};
      const auto check = nc::check_race_history(h);
      CHECK(check.lost.size() == 1);
      CHECK(check.vanished.empty());
    }
  }
}

TEST_CASE("checker: two updates let through on one version are the store's doing, whatever their timing",
          "[race_harness][checker][faults]") {
  // W1 and W2 both read v0 and both sent an update conditional on v0; W2's was sent before W1's
  // was acknowledged, and no read came later: only the two conditions show the store's fault.
  const auto a = nc::make_write_id(1, 9, 1), b = nc::make_write_id(2, 9, 1);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  h.writes = {conditional(wr(1, 0, 0, a, nc::op_outcome::ok, 3), 0),
              conditional(wr(2, 0, 0, b, nc::op_outcome::ok, 2), 0)};
  h.reads = {rd(1, 0, 0, 0), rd(2, 0, 0, 1)};
  h.final_versions = {b};
  SECTION("both conditional on v0: W1's loss is vanished, with W2's update named") {
    const auto check = nc::check_race_history(h);
    REQUIRE(check.vanished.size() == 1);
    CHECK(check.vanished[0].write.writer == 1);
    CHECK_THAT(
        check.vanished[0].trace,
        Catch::Contains("conditionally on the key's state before the run; W2 op 0 wrote conditionally"));
    CHECK(check.lost.empty());
  }
  SECTION("W1 computed from v0 but was conditional on another version: a strategy's loss, lost") {
    h.writes[0].expected = nc::make_write_id(3, 9, 1);
    const auto check = nc::check_race_history(h);
    CHECK(check.lost.size() == 1);
    CHECK(check.vanished.empty());
  }
  SECTION("W2 refused: nothing was lost") {
    h.writes[1].outcome = nc::op_outcome::failed;
    h.final_versions = {a};
    const auto check = nc::check_race_history(h);
    CHECK(check.ok());
  }
}

TEST_CASE("recorder: a conditional update names the version whose token it passed",
          "[race_harness][checker][faults]") {
  nc::memory_store<std::string, std::string> store;
  nc::race_options<std::string, std::string> o;
  o.mode = nc::race_mode::stress;
  o.writers = 1;
  o.ops_per_writer = 3;
  o.keys = {"k"};
  // Op 0 creates the key. Ops 1 and 2 update it from a read, read again, and send a second update
  // computed from the new value but conditional on the first read's token (refused).
  auto strategy = [](auto& view, const std::string& key, auto& fn) {
    const auto first = view.read(key);
    if (!first.found()) {
      (void)view.create_if_absent(key, fn(std::optional<std::string>()));
      return;
    }
    (void)view.write_if_match(key, first.token, fn(first.value));
    const auto second = view.read(key);
    (void)view.write_if_match(key, first.token, fn(second.value));
  };
  const auto report = nc::run_race(store, strategy, o);
  INFO(report.to_text());
  const auto& w = report.history.writes;
  REQUIRE(w.size() == 5);
  CHECK(w[0].kind == nc::write_kind::create_if_absent);
  CHECK(w[0].expected == nc::unknown_version);
  for (std::size_t i : {std::size_t{1}, std::size_t{3}}) {
    CHECK(w[i].outcome == nc::op_outcome::ok);
    CHECK(w[i].expected == w[i].read_from);  // computed from the version its token names
    CHECK(w[i + 1].outcome == nc::op_outcome::failed);
    CHECK(w[i + 1].read_from == w[i].written);   // computed from the second read...
    CHECK(w[i + 1].expected == w[i].read_from);  // ...conditional on the first
  }
}

TEST_CASE("history text: a write's condition round-trips, and a line without one still reads",
          "[race_harness][checker][faults]") {
  nc::race_history h;
  nc::race_write w = wr(1, 2, 7, 8, nc::op_outcome::ok, 10);
  w.expected = 7;
  h.writes = {w, wr(1, 3, 8, 9, nc::op_outcome::ok, 12)};
  const std::string text = nc::serialize_history(h);
  CHECK(text == "w 1 2 1 0 7 8 0 0 10 11 7\nw 1 3 1 0 8 9 0 0 12 13\n");
  nc::race_history back;
  nc::append_history(back, text);
  REQUIRE(back.writes.size() == 2);
  CHECK(back.writes[0].expected == 7);
  CHECK(back.writes[1].expected == nc::unknown_version);
  CHECK_THROWS_AS(nc::append_history(back, "w 1 2 1 0 7 8 0 0 10 11 7 5\n"), std::invalid_argument);
  CHECK_THROWS_AS(nc::append_history(back, "w 1 2 1 0 7 8 0 0 10\n"), std::invalid_argument);
}

TEST_CASE("checker: an update on the final chain twice is doubled, with its attempts",
          "[race_harness][checker][faults]") {
  const auto a1 = nc::make_write_id(1, 9, 1), a2 = nc::make_write_id(1, 9, 2), b = nc::make_write_id(2, 9, 1);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  // W1 op 0: attempt 1 wrote a1 and was told "transient" (it had applied), attempt 2 read a1 and
  // wrote a2 on top: the update is in the state twice. W2 then writes b.
  h.writes = {wr(1, 0, 0, a1, nc::op_outcome::failed, 1, 1), wr(1, 0, a1, a2, nc::op_outcome::ok, 5, 2),
              wr(2, 0, a2, b, nc::op_outcome::ok, 9)};
  h.final_versions = {b};
  const auto check = nc::check_race_history(h);
  REQUIRE(check.doubled.size() == 1);
  REQUIRE(check.doubled[0].copies.size() == 2);
  CHECK(check.doubled[0].copies[0].attempt == 2);  // newest first
  CHECK(check.doubled[0].copies[1].attempt == 1);
  CHECK_THAT(check.doubled[0].trace, Catch::Contains("W1 op 0 is on the final chain of key k 2 times") &&
                                         Catch::Contains("attempt 1 (failed) attempt 2 (ok)"));
  CHECK(check.lost.empty());
  CHECK(check.vanished.empty());
  CHECK_FALSE(check.ok());

  SECTION("one op's attempts of which only one landed are not doubled") {
    h.final_versions = {b};
    h.writes[1].read_from = 0;  // attempt 2 wrote from v0: a1 was not there (it did not land)
    h.writes[0].outcome = nc::op_outcome::failed;
    h.writes[2].read_from = a2;
    const auto again = nc::check_race_history(h);
    CHECK(again.doubled.empty());
    CHECK(again.ok());
  }
}

TEST_CASE("checker: a looping chain lists each doubled value once", "[race_harness][checker][faults]") {
  // Found by tests/fuzz/fuzz_race_history: in a history whose chain loops (an anomaly), the walk
  // that collects a doubled update's copies went round the loop, listing one value up to the
  // number of writes (here a1 twice: 3 copies of an update on the chain 2 times).
  const auto a1 = nc::make_write_id(1, 9, 1), a2 = nc::make_write_id(1, 9, 2);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  h.writes = {wr(1, 0, a1, a1, nc::op_outcome::ok, 1, 1), wr(1, 0, a1, a2, nc::op_outcome::ok, 5, 2)};
  h.final_versions = {a2};
  const auto check = nc::check_race_history(h);
  REQUIRE_FALSE(check.anomalies.empty());  // the chain loops at a1
  REQUIRE(check.doubled.size() == 1);
  REQUIRE(check.doubled[0].copies.size() == 2);
  CHECK(check.doubled[0].copies[0].written == a2);
  CHECK(check.doubled[0].copies[1].written == a1);
  CHECK_THAT(check.doubled[0].trace, Catch::Contains("on the final chain of key k 2 times"));
}

TEST_CASE("checker: an update twice on a long chain is found (its ops checked in hash groups)",
          "[race_harness][checker][faults]") {
  // find_doubled first asks whether any op is on a chain twice, checking the ops of a large
  // history in cache-sized hash groups; 40 000 values on the chain make 16 groups, and one op's
  // two values must still meet in one.
  constexpr std::uint32_t n = 40000, twice = 32345;
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  nc::write_id current = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto id = nc::make_write_id(1, 9, i + 1);
    // Op `twice` wrote twice: attempt 1 (told "failed", it landed), then attempt 2 on top of it.
    const std::uint32_t op = i == twice + 1 ? twice : i;
    const auto outcome = i == twice ? nc::op_outcome::failed : nc::op_outcome::ok;
    h.writes.push_back(wr(1, op, current, id, outcome, 2 * std::uint64_t{i}, i == twice + 1 ? 2 : 1));
    current = id;
  }
  h.final_versions = {current};
  const auto check = nc::check_race_history(h);
  REQUIRE(check.doubled.size() == 1);
  REQUIRE(check.doubled[0].copies.size() == 2);
  CHECK(check.doubled[0].copies[0].attempt == 2);
  CHECK(check.doubled[0].copies[1].op == twice);
  CHECK(check.lost.empty());

  SECTION("with distinct ops it is clean") {
    h.writes[twice + 1].op = twice + 1;
    h.writes[twice].outcome = nc::op_outcome::ok;
    CHECK(nc::check_race_history(h).ok());
  }
}

TEST_CASE("checker: lost writes are listed in order of completion whatever the history's order",
          "[race_harness][checker]") {
  // Groups of 4 writes read one version and one of each group stays on the chain; shuffled, the
  // history's order is not the order of completion, which c.lost (and c.indeterminate) follow.
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  nc::write_id current = 0;
  std::uint64_t tick = 0;
  for (std::uint32_t i = 0; i < 400; i += 4) {
    const nc::write_id read = current;
    for (std::uint32_t j = i; j < i + 4; ++j) {
      current = nc::make_write_id(1 + j % 4, 3, j + 1);
      h.writes.push_back(wr(1 + j % 4, j, read, current,
                            j % 8 == 1 ? nc::op_outcome::unknown : nc::op_outcome::ok, tick += 2));
    }
  }
  h.final_versions = {current};
  const auto ordered = nc::check_race_history(h);
  std::reverse(h.writes.begin(), h.writes.end());
  std::rotate(h.writes.begin(), h.writes.begin() + 37, h.writes.end());
  const auto shuffled = nc::check_race_history(h);
  REQUIRE(ordered.lost.size() == 250);
  REQUIRE(shuffled.lost.size() == ordered.lost.size());
  for (std::size_t i = 0; i < ordered.lost.size(); ++i) {
    CHECK(shuffled.lost[i].lost.written == ordered.lost[i].lost.written);
    if (i > 0) CHECK(ordered.lost[i - 1].lost.complete < ordered.lost[i].lost.complete);
  }
  REQUIRE(shuffled.indeterminate.size() == 50);
  for (std::size_t i = 0; i < shuffled.indeterminate.size(); ++i) {
    CHECK(shuffled.indeterminate[i].write.written == ordered.indeterminate[i].write.written);
    if (i > 0) CHECK(shuffled.indeterminate[i - 1].write.complete < shuffled.indeterminate[i].write.complete);
  }
}

TEST_CASE("checker: who replaced a lost write does not depend on the order of the history's writes",
          "[race_harness][checker]") {
  // X (W1) read v0 and was read by Y (W2, completes at 21) and Z (W3, completes at 16); the final
  // chain is F (W4), which read v0. X, Y and Z are lost; X lives on in its first reader by
  // completion, Z, whose replacer is the next applied write, Y. Exports reorder writes (an Elle or
  // Porcupine round trip sorts them): the names must come out the same.
  const auto x = nc::make_write_id(1, 0, 1), y = nc::make_write_id(2, 0, 1), z = nc::make_write_id(3, 0, 1),
             f = nc::make_write_id(4, 0, 1);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  h.writes = {wr(1, 0, 0, x, nc::op_outcome::ok, 5), wr(2, 0, x, y, nc::op_outcome::ok, 20),
              wr(3, 0, x, z, nc::op_outcome::ok, 15), wr(4, 0, 0, f, nc::op_outcome::ok, 30)};
  h.final_versions = {f};
  auto replacers = [](const nc::race_check& c) {
    std::map<std::uint32_t, std::uint32_t> by_writer;
    for (const auto& l : c.lost) by_writer[l.lost.writer] = l.overwritten_by.writer;
    return by_writer;
  };
  const auto forward = replacers(nc::check_race_history(h));
  std::reverse(h.writes.begin(), h.writes.end());
  const auto backward = replacers(nc::check_race_history(h));
  REQUIRE(forward.size() == 3);
  CHECK(forward == backward);
  CHECK(forward.at(1) == 2);  // X → its first reader Z → Z's replacer Y (W2)
  CHECK(forward.at(3) == 2);
  CHECK(forward.at(2) == 4);
}

TEST_CASE("checker: an op that writes in steps (claim, then completion) is not doubled when it says so",
          "[race_harness][checker][faults]") {
  // W1 op 0 claims (attempt 1, answer lost: unknown), reads its claim back and completes on top
  // (attempt 2): an idempotency ledger's two steps, both rightly on the final chain.
  const auto claim = nc::make_write_id(1, 0, 1), done = nc::make_write_id(1, 0, 2);
  nc::race_history h;
  h.keys = {"ledger/batch-0"};
  h.initial_versions = {0};
  h.writes = {wr(1, 0, 0, claim, nc::op_outcome::unknown, 1, 1),
              wr(1, 0, claim, done, nc::op_outcome::ok, 5, 2)};
  h.final_versions = {done};
  CHECK(nc::check_race_history(h).doubled.size() == 1);  // as one update, it is there twice
  h.ops_write_in_steps = true;
  const auto steps = nc::check_race_history(h);
  CHECK(steps.doubled.empty());
  CHECK(steps.ok());
  REQUIRE(steps.indeterminate.size() == 1);  // the unknown claim is still reported
}

TEST_CASE("checker: every unknown outcome, whether it landed and how its writer went on",
          "[race_harness][checker][faults]") {
  const auto a = nc::make_write_id(1, 9, 1), b1 = nc::make_write_id(2, 9, 1), b2 = nc::make_write_id(2, 9, 2),
             c = nc::make_write_id(3, 9, 1);
  nc::race_history h;
  h.keys = {"k"};
  h.initial_versions = {0};
  // W1 op 0: unknown, landed, W1 read it back. W2 op 0: unknown, did not land, wrote again (b2).
  // W3 op 0: unknown, did not land, nothing after it.
  h.writes = {wr(1, 0, 0, a, nc::op_outcome::unknown, 1), wr(2, 0, 0, b1, nc::op_outcome::unknown, 3, 1),
              wr(2, 0, a, b2, nc::op_outcome::ok, 7, 2), wr(3, 0, b2, c, nc::op_outcome::unknown, 11)};
  h.reads = {rd(1, 0, 0, 0), rd(1, 0, a, 5), rd(2, 0, a, 6), rd(3, 0, b2, 10)};
  h.final_versions = {b2};
  const auto check = nc::check_race_history(h);
  CHECK(check.ok());
  REQUIRE(check.indeterminate.size() == 3);
  CHECK(check.indeterminate[0].write.writer == 1);
  CHECK(check.indeterminate[0].landed);
  CHECK(check.indeterminate[0].how == nc::unknown_resolution::read_back);
  CHECK(check.indeterminate[1].write.writer == 2);
  CHECK_FALSE(check.indeterminate[1].landed);
  CHECK(check.indeterminate[1].how == nc::unknown_resolution::later_attempt);
  CHECK(check.indeterminate[2].write.writer == 3);
  CHECK_FALSE(check.indeterminate[2].landed);
  CHECK(check.indeterminate[2].how == nc::unknown_resolution::unresolved);
  CHECK(check.indeterminate_unresolved() == 1);
  CHECK_THAT(check.indeterminate[2].trace, Catch::Contains("did not land; its writer did not find out"));
}

namespace {

// The libcurl re-send bug's shape (issue 19): every `lie_every`-th write that applied is
// answered "transient", as if nothing had been sent.
class lying_store {
 public:
  using inner_type = nc::memory_store<std::string, std::string>;
  using key_type = std::string;
  using value_type = std::string;
  using token_type = inner_type::token_type;

  lying_store(inner_type& inner, std::atomic<unsigned>& writes, unsigned lie_every)
      : inner_(&inner), writes_(&writes), lie_every_(lie_every) {}

  nc::read_result<value_type, token_type> read(const key_type& k) { return inner_->read(k); }
  nc::write_result<token_type> write_if_match(const key_type& k, const token_type& t, const value_type& v) {
    return maybe_lie(inner_->write_if_match(k, t, v));
  }
  nc::write_result<token_type> create_if_absent(const key_type& k, const value_type& v) {
    return maybe_lie(inner_->create_if_absent(k, v));
  }

 private:
  nc::write_result<token_type> maybe_lie(nc::write_result<token_type> r) {
    if (r.status == nc::write_status::applied && (writes_->fetch_add(1) + 1) % lie_every_ == 0) {
      return nc::write_result<token_type>::make_failed(nc::write_status::transient,
                                                       {"lie", "connection refused"});
    }
    return r;
  }
  inner_type* inner_;
  std::atomic<unsigned>* writes_;
  unsigned lie_every_;
};

}  // namespace

TEST_CASE("checker on a real run: a store that calls an applied write transient gets updates applied twice",
          "[race_harness][checker][faults][concurrency]") {
  nc::memory_store<std::string, std::string> inner;
  std::atomic<unsigned> writes{0};
  nc::race_options<std::string, std::string> o;
  o.mode = nc::race_mode::stress;
  o.writers = 8;
  o.ops_per_writer = 50;
  o.keys = {"a", "b", "c"};
  o.store_name = "lying memory_store";
  auto strategy = [](auto& view, const std::string& key, auto& fn) {
    (void)nc::read_modify_write(view, key, fn);
  };
  const auto report = nc::run_race_per_writer(
      [&](unsigned) { return std::make_unique<lying_store>(inner, writes, 7); }, strategy, o);
  INFO(report.to_text());
  REQUIRE_FALSE(report.check.doubled.empty());
  CHECK(report.check.lost.empty());
  CHECK(report.check.vanished.empty());
  CHECK_FALSE(report.ok());
  CHECK_THAT(report.to_text(),
             Catch::Contains("APPLIED TWICE: " + std::to_string(report.check.doubled.size())));
  CHECK_THAT(report.to_json(), Catch::Contains("\"doubled\":" + std::to_string(report.check.doubled.size())));
}

namespace {

/// A run on 7 keys simulated by hand, with every fault the checker tells apart: blind writes
/// from stale reads (lost), failovers that forget the last write (vanished), unknown outcomes
/// that landed or not, and writers that wrote again after an unknown outcome (doubled). Each
/// record has its own ticks, so orders by completion have no ties.
nc::race_history simulated_faulty_run(std::uint32_t seed) {
  constexpr std::uint32_t keys = 7, writers = 5;
  std::uint64_t state = seed;
  auto next = [&state](std::uint32_t below) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33) % below;
  };
  nc::race_history h;
  for (std::uint32_t k = 0; k < keys; ++k) h.keys.push_back("k" + std::to_string(k));
  h.initial_versions.assign(keys, nc::initial_version);
  std::vector<std::vector<nc::write_id>> versions(keys, std::vector<nc::write_id>{nc::initial_version});
  std::vector<std::uint32_t> ops(writers + 1, 0);
  std::uint64_t tick = 0, seq = 0;
  for (int i = 0; i < 600; ++i) {
    const std::uint32_t k = next(keys), w = 1 + next(writers), op = ops[w]++;
    auto& vs = versions[k];
    if (next(20) == 0 && vs.size() > 1) vs.pop_back();  // a failover forgets the last write
    const nc::write_id seen = next(4) == 0 ? vs[next(static_cast<std::uint32_t>(vs.size()))] : vs.back();
    nc::race_read r = rd(w, op, seen, tick += 2);
    r.key = k;
    h.reads.push_back(r);
    for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
      const nc::write_id id = nc::make_write_id(w, 1, ++seq);
      const std::uint32_t roll = next(10);
      const nc::op_outcome o = roll < 7   ? nc::op_outcome::ok
                               : roll < 9 ? nc::op_outcome::unknown
                                          : nc::op_outcome::failed;
      const bool lands = o == nc::op_outcome::ok || (o == nc::op_outcome::unknown && next(2) == 0);
      nc::race_write x = wr(w, op, attempt == 1 ? seen : vs.back(), id, o, tick += 2, attempt);
      x.key = k;
      h.writes.push_back(x);
      if (lands) vs.push_back(id);
      if (o == nc::op_outcome::ok || next(2) == 0) break;  // else the writer tries again
    }
  }
  for (std::uint32_t k = 0; k < keys; ++k) h.final_versions.push_back(versions[k].back());
  return h;
}

}  // namespace

TEST_CASE("checker in parts: the same verdict as checking the whole history at once",
          "[race_harness][checker][faults]") {
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    const nc::race_history h = simulated_faulty_run(seed);
    const nc::race_check whole = nc::check_race_history(h);
    for (std::size_t parts : {std::size_t{1}, std::size_t{3}, std::size_t{7}, std::size_t{10}}) {
      CAPTURE(parts);
      nc::race_history frame = h;
      frame.writes.clear();
      frame.reads.clear();
      const nc::race_check c =
          nc::check_race_history_in_parts(frame, parts, [&](std::size_t p, nc::race_history& part) {
            for (const auto& w : h.writes)
              if (w.key % parts == p) part.writes.push_back(w);
            for (const auto& r : h.reads)
              if (r.key % parts == p) part.reads.push_back(r);
          });
      CHECK(c.write_attempts == whole.write_attempts);
      CHECK(c.applied == whole.applied);
      CHECK(c.failed == whole.failed);
      CHECK(c.unknown == whole.unknown);
      CHECK(c.unknown_landed == whole.unknown_landed);
      CHECK(c.lost_update_pairs == whole.lost_update_pairs);
      CHECK(c.anomalies == whole.anomalies);
      REQUIRE(c.lost.size() == whole.lost.size());
      for (std::size_t i = 0; i < c.lost.size(); ++i) {
        CHECK(c.lost[i].lost.written == whole.lost[i].lost.written);
        CHECK(c.lost[i].overwritten_by.written == whole.lost[i].overwritten_by.written);
      }
      REQUIRE(c.vanished.size() == whole.vanished.size());
      for (std::size_t i = 0; i < c.vanished.size(); ++i)
        CHECK(c.vanished[i].trace == whole.vanished[i].trace);
      REQUIRE(c.doubled.size() == whole.doubled.size());
      for (std::size_t i = 0; i < c.doubled.size(); ++i) CHECK(c.doubled[i].trace == whole.doubled[i].trace);
      REQUIRE(c.indeterminate.size() == whole.indeterminate.size());
      for (std::size_t i = 0; i < c.indeterminate.size(); ++i)
        CHECK(c.indeterminate[i].trace == whole.indeterminate[i].trace);
    }
  }
  // The simulation really has every kind of verdict in it (else the comparison above proves little).
  std::size_t lost = 0, vanished = 0, doubled = 0, unknown = 0;
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    const nc::race_check c = nc::check_race_history(simulated_faulty_run(seed));
    CHECK(c.anomalies.empty());
    lost += c.lost.size(), vanished += c.vanished.size(), doubled += c.doubled.size(),
        unknown += c.indeterminate.size();
  }
  CHECK(lost > 0);
  CHECK(vanished > 0);
  CHECK(doubled > 0);
  CHECK(unknown > 0);
}

TEST_CASE("checker in parts: a record given to the wrong part is refused",
          "[race_harness][checker][faults]") {
  nc::race_history frame;
  frame.keys = {"a", "b"};
  frame.initial_versions = {0, 0};
  frame.final_versions = {0, 0};
  auto wrong = [](std::size_t, nc::race_history& part) {
    nc::race_write w = wr(1, 0, 0, nc::make_write_id(1, 1, 1), nc::op_outcome::failed, 1);
    w.key = 1;
    part.writes.push_back(w);
  };
  CHECK_THROWS_AS(nc::check_race_history_in_parts(frame, 2, wrong), std::invalid_argument);
  CHECK_THROWS_AS(nc::check_race_history_in_parts(frame, 0, wrong), std::invalid_argument);
}
