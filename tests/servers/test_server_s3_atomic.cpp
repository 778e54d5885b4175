// Is an S3 server's conditional PUT one atomic step? 16 writers, each with its own store (its own
// connection), hold the same ETag (or all see the key absent) and send their conditional PUT at
// once, released by a barrier; round after round. Atomic means: at most one of them is applied,
// and the object afterwards is that one's body. The probe (s3/probe.hpp) cannot see this; only
// concurrent writers can. Findings (docs/adapters/s3.md "What the harness found"):
//   radosgw 16.2  atomic: one PUT applied per round; the others get 412, or 500 UnknownError when
//                 they passed the If-Match check before the winner's write (ECANCELED from the head
//                 object's idtag guard) — reported indeterminate, and none of them landed.
//   s3rver 3.7.1  not conditional at all: every one of the 16 PUTs is applied.
#include <noclobber/adapters/s3.hpp>

#include <barrier>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server_env.hpp"
#include "test_server_s3_common.hpp"

namespace s3 = noclobber::s3;
using nc_s3::server;
using noclobber::write_status;

namespace {

constexpr unsigned writers = 16;

enum class race_kind { update, create };

/// What the rounds gave.
struct tally {
  unsigned rounds = 0;
  unsigned rounds_with_more_than_one_applied = 0;
  unsigned rounds_without_applied = 0;
  unsigned final_not_the_applied_one = 0;   // the object is not the applied writer's body
  unsigned unknown_landed = 0;              // the object is the body of a write not told "applied"
  std::map<std::string, unsigned> answers;  // "applied", "conflict", "exists", "indeterminate 500"...

  [[nodiscard]] std::string text(const char* srv, race_kind kind) const {
    std::ostringstream o;
    o << srv << ", " << writers << " concurrent "
      << (kind == race_kind::update ? "PUT If-Match" : "PUT If-None-Match: *") << ", " << rounds
      << " rounds: rounds with more than one applied " << rounds_with_more_than_one_applied
      << ", rounds with none applied " << rounds_without_applied << ", object not the applied body "
      << final_not_the_applied_one << ", unknown outcome landed " << unknown_landed << "; answers:";
    for (const auto& [what, n] : answers) o << " " << what << " " << n << ";";
    return o.str();
  }
};

std::string answer_name(const noclobber::write_result<std::string>& w) {
  switch (w.status) {
    case write_status::applied:
      return "applied";
    case write_status::conflict:
      return "conflict (412)";
    case write_status::exists:
      return "exists (412)";
    default:
      return std::string(noclobber::to_string(w.status)) + " (" + w.error.code + ")";
  }
}

/// `rounds` rounds of 16 conditional PUTs at once on a fresh key each.
tally race_rounds(server srv, s3::enforcement check, race_kind kind, unsigned rounds) {
  std::vector<std::unique_ptr<s3::store>> stores;
  for (unsigned i = 0; i < writers; ++i)
    stores.push_back(std::make_unique<s3::store>(nc_s3::options_for(srv, check)));
  s3::store setup(nc_s3::options_for(srv, check));
  if (check == s3::enforcement::probe) REQUIRE(setup.probe().writes_enforced());

  // Round state: written by the main thread before `go`, read by the writers after it; the
  // writers' answers are written before `done` and read by the main thread after it.
  std::string key, token;
  std::vector<std::optional<noclobber::write_result<std::string>>> answers(writers);
  auto body = [&](unsigned w) { return key + " by writer " + std::to_string(w); };
  std::barrier go(writers + 1), done(writers + 1);
  bool stop = false;
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (;;) {
        go.arrive_and_wait();
        if (stop) return;
        answers[w] = kind == race_kind::update ? stores[w]->write_if_match(key, token, body(w))
                                               : stores[w]->create_if_absent(key, body(w));
        done.arrive_and_wait();
      }
    });
  }

  tally t;
  for (unsigned round = 0; round < rounds; ++round) {
    key = nc_test::unique_name("atomic/" + std::string(nc_s3::name(srv)));
    if (kind == race_kind::update) {
      auto c = setup.overwrite(key, key + " initial");
      auto r = setup.read(key);
      if (!c.ok() || !r.found()) {
        stop = true;
        go.arrive_and_wait();
        for (auto& th : threads) th.join();
        FAIL("setting up round " << round << ": " << c.error.message << " " << r.error.message);
      }
      token = r.token;
    }
    go.arrive_and_wait();
    done.arrive_and_wait();
    auto final_read = setup.read(key);
    std::optional<unsigned> winner;
    unsigned applied = 0;
    for (unsigned w = 0; w < writers; ++w) {
      ++t.answers[answer_name(*answers[w])];
      if (answers[w]->ok()) ++applied, winner = w;
    }
    ++t.rounds;
    if (applied > 1) ++t.rounds_with_more_than_one_applied;
    if (applied == 0) ++t.rounds_without_applied;
    if (applied == 1 && !(final_read.found() && final_read.value == body(*winner)))
      ++t.final_not_the_applied_one;
    for (unsigned w = 0; w < writers; ++w) {
      if (!answers[w]->ok() && final_read.found() && final_read.value == body(w)) ++t.unknown_landed;
    }
  }
  stop = true;
  go.arrive_and_wait();
  for (auto& th : threads) th.join();
  return t;
}

}  // namespace

TEST_CASE("radosgw: 16 concurrent PUT If-Match on one ETag: exactly one applied, every round",
          "[server][s3][radosgw]") {
  const tally t = race_rounds(server::radosgw, s3::enforcement::probe, race_kind::update, 40);
  WARN(t.text("radosgw", race_kind::update));
  CHECK(t.rounds_with_more_than_one_applied == 0);  // atomic: never two winners
  CHECK(t.rounds_without_applied == 0);
  CHECK(t.final_not_the_applied_one == 0);
  CHECK(t.unknown_landed == 0);  // the 500s were not applied
}

TEST_CASE("radosgw: 16 concurrent PUT If-None-Match: * on one absent key: exactly one applied, every round",
          "[server][s3][radosgw]") {
  const tally t = race_rounds(server::radosgw, s3::enforcement::probe, race_kind::create, 40);
  WARN(t.text("radosgw", race_kind::create));
  CHECK(t.rounds_with_more_than_one_applied == 0);
  CHECK(t.rounds_without_applied == 0);
  CHECK(t.final_not_the_applied_one == 0);
  CHECK(t.unknown_landed == 0);
}

TEST_CASE("s3rver: 16 concurrent PUT If-Match on one ETag: all 16 applied (negative control)",
          "[server][s3][s3rver]") {
  const tally t = race_rounds(server::s3rver, s3::enforcement::trust, race_kind::update, 3);
  WARN(t.text("s3rver", race_kind::update));
  CHECK(t.rounds_with_more_than_one_applied == t.rounds);
  CHECK(t.answers.at("applied") == writers * t.rounds);
}
