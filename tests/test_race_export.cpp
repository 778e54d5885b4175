// Export and import of race histories (race_harness/export.hpp): Jepsen/Elle EDN both ways and
// Porcupine JSON out. Hand-written histories with known verdicts go through the checker; a real
// naive run exported and imported keeps its verdict; malformed input is refused with a clear
// error. The Porcupine import (json/porcupine.hpp): tests/json/test_porcupine_json.cpp.
#include <noclobber/memory_store.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/export.hpp>

#include <catch2/catch.hpp>

#include <string>

#include "export_check.hpp"

namespace nc = noclobber;

namespace {
using store_t = nc::memory_store<std::string, std::string>;
}  // namespace

TEST_CASE("Elle EDN: hand-written histories with known verdicts", "[race_harness][export]") {
  SECTION("a lost update: two transactions read nil, both write; 2 survives") {
    const auto h = nc::from_elle_edn(R"([
      {:type :invoke, :f :txn, :value [[:r "x" nil] [:w "x" 1]], :process 1, :time 0, :index 0}
      {:type :invoke, :f :txn, :value [[:r "x" nil] [:w "x" 2]], :process 2, :time 1, :index 1}
      {:type :ok, :f :txn, :value [[:r "x" nil] [:w "x" 1]], :process 1, :time 2, :index 2}
      {:type :ok, :f :txn, :value [[:r "x" nil] [:w "x" 2]], :process 2, :time 3, :index 3}
      {:type :invoke, :f :txn, :value [[:r "x" nil]], :process 0, :time 4, :index 4}
      {:type :ok, :f :txn, :value [[:r "x" 2]], :process 0, :time 5, :index 5}])");
    REQUIRE(h.keys == std::vector<std::string>{"x"});
    REQUIRE(h.final_versions == std::vector<nc::write_id>{2});
    const auto c = nc::check_race_history(h);
    REQUIRE(c.lost.size() == 1);
    REQUIRE(c.lost_update_pairs == 1);
    REQUIRE(c.lost[0].lost.writer == 1);
    REQUIRE(c.lost[0].lost.invoke == 0);
    REQUIRE(c.lost[0].lost.complete == 2);
    REQUIRE(c.lost[0].overwritten_by.writer == 2);
  }
  SECTION("a clean chain, a failed CAS, an unknown outcome that landed, reads on the way") {
    const auto h = nc::from_elle_edn(R"([
      {:type :invoke, :process 1, :f :txn, :value [[:r :k nil] [:w :k 10]]}
      {:type :info, :process 1, :f :txn, :value [[:r :k nil] [:w :k 10]]}
      {:type :invoke, :process 2, :f :txn, :value [[:r :k nil] [:w :k 20]]}
      {:type :fail, :process 2, :f :txn, :value [[:r :k nil] [:w :k 20]]}
      {:type :invoke, :process 2, :f :txn, :value [[:r :k nil]]}
      {:type :ok, :process 2, :f :txn, :value [[:r :k 10]]}
      {:type :invoke, :process 2, :f :txn, :value [[:r :k 10] [:w :k 21]]}
      {:type :ok, :process 2, :f :txn, :value [[:r :k 10] [:w :k 21]]}
      {:type :ok, :process 0, :f :txn, :value [[:r :k 21]]}])");
    REQUIRE(h.keys == std::vector<std::string>{":k"});
    REQUIRE(h.reads.size() == 1);
    const auto c = nc::check_race_history(h);
    REQUIRE(c.ok());
    REQUIRE(c.failed == 1);
    REQUIRE(c.unknown == 1);
    REQUIRE(c.unknown_landed == 1);
    REQUIRE(c.applied == 1);
  }
  SECTION("a lost branch on the second key only") {
    const auto h = nc::from_elle_edn(R"([
      {:type :ok, :process 1, :value [[:r "a" nil] [:w "a" 1]]}
      {:type :ok, :process 1, :value [[:r "b" nil] [:w "b" 2]]}
      {:type :ok, :process 2, :value [[:r "b" 2] [:w "b" 3]]}
      {:type :ok, :process 3, :value [[:r "b" nil] [:w "b" 4]]}
      {:type :ok, :process 0, :value [[:r "a" 1]]}
      {:type :ok, :process 0, :value [[:r "b" 4]]}])");
    const auto c = nc::check_race_history(h);
    REQUIRE(c.lost.size() == 2);  // 2 and 3 (which built on 2) are both gone
    for (const auto& l : c.lost) {
      CHECK(h.keys[l.lost.key] == "b");
      CHECK(l.overwritten_by.writer == 3);
    }
  }
}

TEST_CASE("a real run exported and imported keeps its verdict", "[race_harness][export][concurrency]") {
  nc_test::require_real_runs_keep_their_verdict(
      [](const nc::race_history& h) { return nc::from_elle_edn(nc::to_elle_edn(h)); });
}

TEST_CASE("the exports' shape", "[race_harness][export][concurrency]") {
  store_t store;
  nc::race_options_for<store_t> o;
  o.writers = 2;
  const auto r = nc::run_race(store, nc::naive_strategy{}, o);
  const std::string edn = nc::to_elle_edn(r.history);
  REQUIRE_THAT(edn, Catch::StartsWith("[{:type :invoke, :f :txn, :value [[:r \"noclobber/race\" nil]") &&
                        Catch::Contains(":process 0") && Catch::Contains(":index 0}"));
  const std::string json = nc::to_porcupine_json(r.history);
  REQUIRE_THAT(json, Catch::StartsWith("[{\"ClientId\":") && Catch::Contains("\"op\":\"rmw\"") &&
                         Catch::Contains("\"outcome\":\"ok\""));
}

TEST_CASE("imports refuse what they cannot read, naming it", "[race_harness][export]") {
  REQUIRE_THROWS_WITH(nc::from_elle_edn("[{:type :ok"), Catch::Contains("missing '}'"));
  REQUIRE_THROWS_WITH(nc::from_elle_edn("{}"), Catch::Contains("vector of operations"));
  REQUIRE_THROWS_WITH(nc::from_elle_edn("[{:type :ok, :process 1, :value [[:w \"x\" 1]]}]"),
                      Catch::Contains("write without a read"));
  REQUIRE_THROWS_WITH(nc::from_elle_edn("[{:type :ok, :process 1, :value [[:r \"x\" nil] [:w \"x\" 1]]}]"),
                      Catch::Contains("no final read of key x"));
  REQUIRE_THROWS_WITH(nc::from_elle_edn("[{:type :ok, :process 1, :value [[:r \"x\" 1.5]]}]"),
                      Catch::Contains("'1.5'"));
  REQUIRE_THROWS_WITH(nc::from_elle_edn("[{:type :maybe, :process 1, :value [[:r \"x\" nil]]}]"),
                      Catch::Contains(":maybe"));
}

TEST_CASE("EDN strings: the escapes the export writes read back", "[race_harness][export]") {
  // Found by tests/fuzz/fuzz_race_history: the EDN reader took the character after a backslash
  // literally, so a key named "a\nb" read back as "anb" and "\u0001" as "u0001" (two keys whose
  // names differ only there became one).
  nc::race_history h;
  h.keys = {std::string("a\nb"), std::string("anb"), std::string("t\t\x01\"\\/r\r")};
  h.initial_versions = {0, 0, 0};
  h.final_versions = {0, 0, 0};
  const auto back = nc::from_elle_edn(nc::to_elle_edn(h));
  CHECK(back.keys == h.keys);
  // \b, \f and \u escapes (a surrogate pair as one code point, in UTF-8) are read as well.
  const auto u = nc::from_elle_edn(
      R"([{:type :ok, :f :txn, :value [[:r "\b\f\u00e9\ud83d\ude00" nil]], :process 0, :time 1}])");
  REQUIRE(u.keys.size() == 1);
  CHECK(u.keys[0] == "\b\f\xc3\xa9\xf0\x9f\x98\x80");
  for (const char* bad : {R"("\q")", R"("\u12")", R"("\udc00")", R"("\ud83d")", R"("\ud83dx")", "\"\\"}) {
    INFO(bad);
    const std::string edn =
        std::string("[{:type :ok, :f :txn, :value [[:r ") + bad + " nil]], :process 0, :time 1}]";
    CHECK_THROWS_AS(nc::from_elle_edn(edn), std::invalid_argument);
  }
}
