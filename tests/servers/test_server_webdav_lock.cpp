// The WebDAV LOCK adapter (noclobber/adapters/webdav_lock.hpp) against Apache httpd 2.4 mod_dav
// (NOCLOBBER_DAV_URL): the protocol (LOCK, lock-null resources, If: tokens, UNLOCK, expiry),
// update_under_lock's outcomes, and whether mod_dav's LOCK gives mutual exclusion under
// concurrency — 16 simultaneous LOCKs, the race harness (16 writers × 2,000 ops), 4 writer
// processes, and a holder killed with SIGKILL. Each measurement prints one "[webdav_lock]" line;
// docs/adapters/webdav_lock.md records what they showed.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <latch>
#include <memory>
#include <mutex>
#include <noclobber/adapters/webdav_lock.hpp>
#include <noclobber/race_harness.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness_common.hpp"
#include "server_env.hpp"

namespace wl = noclobber::webdav_lock;
using noclobber::read_status;
using noclobber::rmw_outcome;
using noclobber::write_status;

namespace {
std::string url() {
  return nc_test::server_env("NOCLOBBER_DAV_URL");
}

// Waits out busy locks: 1–20 ms full jitter, for up to `timeout`.
noclobber::retry_policy busy_policy(std::chrono::seconds timeout = std::chrono::seconds(60)) {
  noclobber::retry_policy p;
  p.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(20));
  p.max_attempts = 1000000;
  p.timeout = timeout;
  return p;
}

std::size_t count_of(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
  return n;
}

// Memory shared with forked children (MAP_SHARED | MAP_ANONYMOUS), holding T.
template <class T>
class shared {
 public:
  shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    p_ = new (p) T();
  }
  shared(const shared&) = delete;
  shared& operator=(const shared&) = delete;
  ~shared() {
    p_->~T();
    ::munmap(p_, sizeof(T));
  }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }

 private:
  T* p_ = nullptr;
};

// Counts, across threads and processes, how many clients believe they hold one key's lock: each
// enters after the server answered its LOCK 200 and leaves before it sends UNLOCK, so two inside
// at once means the server granted two exclusive locks whose lifetimes overlapped.
struct holders {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<long> overlaps{0};  // entries that found someone else inside
  std::atomic<long> entries{0};
  void enter() {
    const int now = inside.fetch_add(1) + 1;
    entries.fetch_add(1);
    if (now > 1) overlaps.fetch_add(1);
    int m = most.load();
    while (now > m && !most.compare_exchange_weak(m, now)) {
    }
  }
  void leave() { inside.fetch_sub(1); }
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<long>::is_always_lock_free);

// A 2-second lock timeout: a lock nobody releases (a killed holder, or one the server lost track
// of) blocks its key for 2 s instead of 30.
wl::lock_options short_lock() {
  return {std::chrono::seconds(2), "noclobber test"};
}

// Locks `key`, retrying on 423 (up to 60 s). True when held; else `why` says what LOCK answered.
bool lock_waiting(wl::store& s, const std::string& key, const wl::lock_options& opt, std::string& why) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    auto r = s.lock(key, opt);
    if (r.ok()) return true;
    if (r.status != write_status::transient) {
      why = std::string(noclobber::to_string(r.status)) + " " + r.error.code;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + std::rand() % 2000));
  }
  why = "waited 60 s";
  return false;
}

// The harness strategy: update_under_lock, with the reads and writes going through the harness's
// recording view (race_store<wl::store>) and LOCK / UNLOCK through the writer's own client.
// WebDAV locks are not queued: a writer that just unlocked re-locks for its next op before any
// waiter's retry, so writers tend to hold the key for runs of ops and a waiter may wait out most
// of the others' work (on a loaded machine a whole run can take 100 s). The deadline is therefore
// the whole test's, not 60 s: giving up on a busy key is not what these tests are about.
struct lock_strategy {
  noclobber::retry_policy policy = busy_policy(std::chrono::seconds(240));
  wl::lock_options opt = short_lock();
  template <class View, class Fn>
  void operator()(View& view, const std::string& key, Fn& fn) const {
    auto r = wl::update_under_lock(view.inner(), view, key, fn, policy, opt);
    if (!r.ok()) {
      throw std::runtime_error("update_under_lock gave up: " + std::string(noclobber::to_string(r.reason)) +
                               " " + r.last_error.code + " " + r.last_error.message);
    }
  }
};
}  // namespace

TEST_CASE("webdav_lock store: LOCK, lock-null, If: tokens and UNLOCK against Apache mod_dav",
          "[server][webdav]") {
  wl::store a(url());
  wl::store b(url());
  const std::string key = nc_test::unique_name("lock");

  // LOCK on an absent resource: mod_dav answers 200 and makes a lock-null resource (no body; a
  // GET still says 404). Others get 423 for LOCK and for writes.
  auto la = a.lock(key);
  REQUIRE(la.ok());
  REQUIRE(la.token);
  CHECK(la.token->starts_with("<opaquelocktoken:"));
  REQUIRE(a.held(key) != nullptr);
  CHECK(*a.held(key) == *la.token);
  CHECK(a.read(key).status == read_status::absent);
  auto lb = b.lock(key);
  CHECK(lb.status == write_status::transient);
  CHECK(lb.error.code == "423");
  CHECK(b.create_if_absent(key, "b").status == write_status::transient);  // 423, no token
  CHECK(b.stats().refused == 1);
  CHECK_THROWS_AS(a.lock(key), std::logic_error);

  // The holder's writes carry If: (<token>).
  REQUIRE(a.create_if_absent(key, "v1").ok());
  CHECK(a.create_if_absent(key, "again").status == write_status::exists);
  auto r1 = a.read(key);
  REQUIRE(r1.found());
  CHECK(r1.value == "v1");
  CHECK(b.write_if_match(key, r1.token, "b").status == write_status::transient);    // 423
  CHECK(a.write_if_match(key, "\"stale\"", "x").status == write_status::conflict);  // 412 on If-Match
  REQUIRE(a.write_if_match(key, r1.token, "v2").ok());
  CHECK(a.unlock(key) == write_status::applied);
  CHECK(a.held(key) == nullptr);
  CHECK(a.unlock(key) == write_status::absent);

  // Released: b may lock and write now.
  REQUIRE(b.lock(key).ok());
  auto r2 = b.read(key);
  REQUIRE(r2.value == "v2");
  REQUIRE(b.write_if_match(key, r2.token, "v3").ok());
  CHECK(b.unlock(key) == write_status::applied);

  // A lock-null resource released without a write is gone again.
  const std::string ghost = key + "-ghost";
  REQUIRE(a.lock(ghost).ok());
  CHECK(a.unlock(ghost) == write_status::applied);
  CHECK(a.read(ghost).status == read_status::absent);
  REQUIRE(b.lock(ghost).ok());  // and lockable at once
  CHECK(b.unlock(ghost) == write_status::applied);

  // erase_if_match under the lock removes the lock with the resource.
  REQUIRE(a.lock(key).ok());
  auto r3 = a.read(key);
  REQUIRE(a.erase_if_match(key, r3.token).ok());
  CHECK(a.held(key) == nullptr);
  CHECK(a.read(key).status == read_status::absent);

  CHECK_THROWS_AS(a.lock(key, {std::chrono::seconds(0), ""}), std::invalid_argument);
  CHECK_THROWS_AS(a.lock("../x"), std::invalid_argument);
  CHECK_THROWS_AS(wl::store("ftp://x/"), std::invalid_argument);
}

TEST_CASE("webdav_lock: an expired lock frees the key and its holder's write is refused",
          "[server][webdav]") {
  wl::store a(url());
  wl::store b(url());
  const std::string key = nc_test::unique_name("expiry");
  REQUIRE(a.create_if_absent(key, "v0").ok());
  // mod_dav counts whole seconds: a lock of N seconds expires at the N-th second boundary after
  // it was granted, i.e. after N-1 to N s. 3 s leaves b's first LOCK at least 2 s (a 1 s lock
  // expired before b's LOCK on a loaded CI machine).
  REQUIRE(a.lock(key, {std::chrono::seconds(3), "slow holder"}).ok());
  const auto granted = std::chrono::steady_clock::now();  // the server granted it before this
  auto ra = a.read(key);
  REQUIRE(ra.found());
  CHECK(b.lock(key).status == write_status::transient);
  std::this_thread::sleep_until(granted + std::chrono::milliseconds(3100));  // expired by now
  REQUIRE(b.lock(key).ok());                                                 // a's lock expired
  // a's PUT still names its expired token: refused (423: b's lock is there), never applied.
  auto late = a.write_if_match(key, ra.token, "late");
  CHECK(late.status == write_status::conflict);
  CHECK(a.stats().refused_writes == 1);
  auto rb = b.read(key);
  CHECK(rb.value == "v0");
  REQUIRE(b.write_if_match(key, rb.token, "v1").ok());
  CHECK(b.unlock(key) == write_status::applied);
  CHECK(a.unlock(key) != write_status::applied);  // the server no longer knows a's token
  CHECK(a.stats().unlock_failures == 1);
}

TEST_CASE("webdav_lock: update_under_lock outcomes", "[server][webdav]") {
  wl::store s(url());
  wl::store other(url());
  const std::string key = nc_test::unique_name("update");

  auto created = wl::update_under_lock(
      s, key, [](const std::optional<std::string>& cur) { return cur.value_or("") + "a;"; });
  REQUIRE(created.ok());
  CHECK(created.outcome == rmw_outcome::applied);
  CHECK(created.created);
  CHECK(created.value == "a;");
  CHECK(s.held(key) == nullptr);  // released

  auto appended = wl::update_under_lock(
      s, key, [](const std::optional<std::string>& cur) { return cur.value_or("") + "b;"; });
  REQUIRE(appended.ok());
  CHECK_FALSE(appended.created);
  CHECK(s.read(key).value == "a;b;");

  auto kept = wl::update_under_lock(
      s, key,
      [](const std::optional<std::string>&) -> noclobber::update<std::string> { return noclobber::keep; });
  CHECK(kept.outcome == rmw_outcome::unchanged);
  auto aborted =
      wl::update_under_lock(s, key, [](const std::optional<std::string>&) -> noclobber::update<std::string> {
        return noclobber::abort("no");
      });
  CHECK(aborted.outcome == rmw_outcome::aborted);
  CHECK(aborted.abort_reason == "no");

  // fn throws: the lock is released, nothing written, the exception propagates.
  CHECK_THROWS_AS(
      wl::update_under_lock(
          s, key, [](const std::optional<std::string>&) -> std::string { throw std::runtime_error("boom"); }),
      std::runtime_error);
  CHECK(s.held(key) == nullptr);
  REQUIRE(other.lock(key).ok());  // not stuck

  // While `other` holds the lock, update_under_lock waits (423, transient) and gives up at the
  // policy's limit; fn never ran.
  noclobber::retry_policy short_wait;
  short_wait.max_attempts = 3;
  short_wait.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(5));
  int calls = 0;
  auto busy = wl::update_under_lock(
      s, key,
      [&](const std::optional<std::string>& cur) {
        ++calls;
        return cur.value_or("") + "never;";
      },
      short_wait);
  CHECK(busy.outcome == rmw_outcome::gave_up);
  CHECK(busy.reason == noclobber::stop_reason::attempts_exhausted);
  CHECK(busy.last_status == write_status::transient);
  CHECK(busy.last_error.code == "423");
  CHECK(calls == 0);
  CHECK(other.unlock(key) == write_status::applied);
  CHECK(s.read(key).value == "a;b;");

  // A key that was absent and whose update was aborted stays absent (the lock-null resource goes).
  const std::string never = key + "-never";
  auto no = wl::update_under_lock(s, never,
                                  [](const std::optional<std::string>&) -> noclobber::update<std::string> {
                                    return noclobber::abort("changed my mind");
                                  });
  CHECK(no.outcome == rmw_outcome::aborted);
  CHECK(s.read(never).status == read_status::absent);
}

// Which check lets an update through when two clients hold "the" lock: the lock or the PUT? Forced,
// not left to chance. A holds the lock, reads, and starts its PUT (lock token and If-Match) with
// `Expect: 100-continue`: mod_dav checks both before it asks for the body (100), then waits. A's
// lock then ends while the PUT is open: here it expires (a slow client); in the harness run that
// lost updates, a LOCK granted beside A's replaced A's record (the two `finding` tests below
// show such grants). While A's lock is
// valid, exclusion holds: B's LOCK is refused. Once it has gone, B locks, reads the same version
// and writes; then A's body arrives and is accepted, over B's acknowledged update.
TEST_CASE(
    "webdav_lock: finding (forced window): a PUT's token and If-Match checks are not atomic with its write",
    "[server][webdav][concurrency]") {
  wl::store a(url());
  wl::store b(url());
  const std::string key = nc_test::unique_name("stale-put");
  REQUIRE(a.create_if_absent(key, "v0").ok());
  // 3 s, not 1: mod_dav counts whole seconds, so a lock of N s lasts N-1 to N s.
  auto la = a.lock(key, {std::chrono::seconds(3), "slow holder"});
  REQUIRE(la.ok());
  const auto granted = std::chrono::steady_clock::now();  // the server granted it before this
  const auto seen = a.read(key);
  REQUIRE(seen.found());
  const std::string body = "A's update";
  nc_test::stalled_put slow(
      url(), key,
      noclobber::detail::http::if_lock_header(url() + key, *la.token) + "\r\nIf-Match: " + seen.token,
      body.size());
  REQUIRE(slow.interim_status() == 100);  // the token and the ETag passed; the write is still to come

  // What holds: while A's lock is valid, B cannot take it, and cannot write without it.
  auto refused = b.lock(key);
  CHECK(refused.status == write_status::transient);
  CHECK(refused.error.code == "423");
  CHECK(b.write_if_match(key, seen.token, "B without the lock").status == write_status::transient);

  // A's lock expires (mod_dav counts whole seconds); B then updates under its own lock.
  std::this_thread::sleep_until(granted + std::chrono::milliseconds(3100));
  auto b_update = wl::update_under_lock(
      b, key, [](const std::optional<std::string>& cur) { return cur.value_or("") + " + B's update"; },
      busy_policy(), short_lock());
  REQUIRE(b_update.ok());
  CHECK(b_update.outcome == rmw_outcome::applied);
  CHECK(b_update.value == "v0 + B's update");  // B read the version A had read

  // What does not hold: A's PUT, checked under a lock that is gone, lands over B's update.
  const int status = slow.finish(body);
  CHECK(status >= 200);
  CHECK(status < 300);
  CHECK(wl::store(url()).read(key).value == body);  // B's acknowledged update is lost
  (void)a.unlock(key);                              // refused (expired); forgets the token
}

// How many of 16 simultaneous LOCKs on one resource does mod_dav grant? An exclusive lock
// allows one. Rounds alternate between an existing resource and an absent one (lock-null).
TEST_CASE("webdav_lock: finding: 16 simultaneous LOCKs on one resource",
          "[server][webdav][race][concurrency]") {
  constexpr int clients = 16;
  constexpr int rounds = 100;
  std::vector<std::unique_ptr<wl::store>> s;
  for (int i = 0; i < clients; ++i) s.push_back(std::make_unique<wl::store>(url()));
  const std::string base = nc_test::unique_name("simul");
  std::vector<int> granted(rounds, 0);
  std::vector<int> errors(rounds, 0);
  std::atomic<int> five_hundreds{0};
  std::barrier sync(clients);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        wl::store& me = *s[static_cast<std::size_t>(i)];
        (void)me.read(base + "-warm");  // connect before the first round
        for (int round = 0; round < rounds; ++round) {
          const std::string key = base + "-" + std::to_string(round);
          if (i == 0 && round % 2 == 0) (void)me.create_if_absent(key, "x");
          sync.arrive_and_wait();
          auto r = me.lock(key);
          sync.arrive_and_wait();  // everyone has its answer before anyone unlocks
          if (r.ok()) {
            std::atomic_ref<int>(granted[static_cast<std::size_t>(round)]).fetch_add(1);
            (void)me.unlock(key);
          } else if (!r.error.code.empty() && r.error.code[0] == '5') {
            five_hundreds.fetch_add(1);  // mod_dav_fs's torn .locknull reads: part of the finding
          } else if (r.error.code != "423") {
            std::atomic_ref<int>(errors[static_cast<std::size_t>(round)]).fetch_add(1);
          }
          sync.arrive_and_wait();
        }
      });
    }
  }
  int most = 0, multi_rounds = 0, multi_existing = 0, multi_absent = 0, none = 0, total_errors = 0;
  std::string per_round;
  for (int round = 0; round < rounds; ++round) {
    const int g = granted[static_cast<std::size_t>(round)];
    most = std::max(most, g);
    if (g > 1) {
      ++multi_rounds;
      (round % 2 == 0 ? multi_existing : multi_absent) += 1;
    }
    if (g == 0) ++none;
    total_errors += errors[static_cast<std::size_t>(round)];
    per_round += std::to_string(g) + (round + 1 < rounds ? "," : "");
  }
  std::printf(
      "[webdav_lock] 16 simultaneous LOCKs x %d rounds: granted per round [%s]; rounds with >1 granted: %d "
      "(existing %d, absent %d); most at once: %d; rounds with none: %d; 5xx answers: %d; other errors: %d\n",
      rounds, per_round.c_str(), multi_rounds, multi_existing, multi_absent, most, none, five_hundreds.load(),
      total_errors);
  std::fflush(stdout);
  INFO("granted per round: " << per_round);
  CHECK(total_errors == 0);
  CHECK(none <= five_hundreds.load());  // a round is empty only when its winner got a 500
  // The finding (docs/adapters/webdav_lock.md): mod_dav_fs checks for conflicting locks and then
  // stores the new one in its lock database (Berkeley DB, opened per request without locking),
  // so simultaneous LOCKs on one resource are granted together — on an absent resource (a
  // lock-null resource) in most rounds. How often depends on how Apache's workers interleave
  // (nothing outside the server can force it: mod_dav reads a LOCK's body before it checks), so
  // the figures are reported above, not asserted.
  if (most > 1) WARN("mod_dav granted up to " << most << " simultaneous exclusive LOCKs on one resource");
}

// Mutual exclusion measured directly: 16 threads take turns holding one key's lock; a shared
// counter says whether two of them ever held it at once. On an absent key every LOCK makes a
// lock-null resource (UNLOCK removes it again); on an existing key it is a plain lock.
TEST_CASE("webdav_lock: finding: 16 threads taking one lock in turn overlap",
          "[server][webdav][race][concurrency]") {
  constexpr int clients = 16;
  constexpr int turns = 40;  // per thread: 640 lock/unlock pairs in all
  for (const bool existing : {true, false}) {
    DYNAMIC_SECTION((existing ? "existing resource" : "absent resource (lock-null)")) {
      const std::string key = nc_test::unique_name("turns");
      if (existing) REQUIRE(wl::store(url()).create_if_absent(key, "x").ok());
      holders h;
      std::atomic<int> failures{0};
      std::atomic<long> unlock_failures{0};
      std::mutex why_mutex;
      std::string first_why;
      {
        std::latch start(clients);
        std::vector<std::jthread> threads;
        for (int i = 0; i < clients; ++i) {
          threads.emplace_back([&] {
            wl::store me(url());
            start.arrive_and_wait();
            for (int t = 0; t < turns; ++t) {
              std::string why;
              if (!lock_waiting(me, key, short_lock(), why)) {
                failures.fetch_add(1);
                const std::lock_guard g(why_mutex);
                if (first_why.empty()) first_why = why;
                continue;
              }
              h.enter();
              std::this_thread::sleep_for(std::chrono::microseconds(300));
              h.leave();
              (void)me.unlock(key);
            }
            unlock_failures.fetch_add(static_cast<long>(me.stats().unlock_failures));
          });
        }
      }
      std::printf(
          "[webdav_lock] 16 threads x %d lock/unlock turns, %s: %ld holds, %ld found another holder "
          "inside, most at once %d, UNLOCKs refused %ld, LOCKs failed otherwise %d (%s)\n",
          turns, existing ? "existing resource" : "absent resource (lock-null)", h.entries.load(),
          h.overlaps.load(), h.most.load(), unlock_failures.load(), failures.load(), first_why.c_str());
      std::fflush(stdout);
      CHECK(failures.load() == 0);
      CHECK(h.entries.load() == clients * turns);
      // The finding: two clients hold "the" exclusive lock at once, on existing resources too.
      // How often depends on Apache's scheduling: reported above, not asserted.
    }
  }
}

// The race harness drives update_under_lock: 16 writers, one client each, 2,000 operations.
// LOCK / UNLOCK go through the writer's client; the GET and PUT in between through the harness's
// recording view, so the checker sees every read and write.
namespace {
void harness_run(bool forced) {
  using S = wl::store;
  using noclobber::race_mode;
  const std::string u = url();
  std::vector<std::unique_ptr<S>> clients;
  for (unsigned i = 0; i < nc_harness::writers; ++i) clients.push_back(std::make_unique<S>(u));
  auto make = [&](unsigned i) -> S& { return *clients[i]; };
  auto totals = [&] {
    wl::lock_stats t;
    for (auto& c : clients) {
      t.acquired += c->stats().acquired;
      t.refused += c->stats().refused;
      t.unlock_failures += c->stats().unlock_failures;
      t.refused_writes += c->stats().refused_writes;
    }
    return t;
  };
  const int nkeys = forced ? 4 : 1;
  auto opt = nc_harness::options<S>("apache", "webdav-lock", forced ? race_mode::forced : race_mode::stress,
                                    nc_harness::ops_per_writer, nc_harness::fresh_keys("davlock", nkeys));
  opt.barrier_timeout = std::chrono::milliseconds(1000);  // well inside the 3 s lock timeout
  lock_strategy strategy;
  strategy.opt.timeout = std::chrono::seconds(3);
  auto r = noclobber::run_race_per_writer(make, strategy, opt);
  const wl::lock_stats t = totals();
  std::printf(
      "[webdav_lock] harness %s, 16 writers x 125 ops, %d key(s): ops %zu, op errors %zu, write retries %zu, "
      "applied %zu, LOST %zu, lost-update pairs %zu; LOCKs granted %zu, refused (423) %zu, "
      "PUTs refused for the lock token %zu, UNLOCKs refused %zu; %.1f s\n",
      forced ? "forced" : "stress", nkeys, r.operations, r.op_errors, r.retries, r.check.applied, r.lost(),
      r.check.lost_update_pairs, t.acquired, t.refused, t.refused_writes, t.unlock_failures,
      static_cast<double>(r.elapsed.count()) / 1e9);
  std::fflush(stdout);
  INFO(r.to_text());
  CHECK(r.operations == nc_harness::writers * nc_harness::ops_per_writer);
  CHECK(r.op_errors == 0);
  if (forced) CHECK(r.writers_serialised);  // the LOCK spans read and write: the barrier times out
  // What keeps most updates: a PUT must name a lock token the server still has, and of the locks
  // granted together only the last one stored survives in the lock database; the others' PUTs
  // are refused (412) and their attempts start again. Not all: mod_dav checks the token and the
  // ETag before it reads the body and not again when it writes (forced, and asserted, in
  // "finding (forced window): a PUT's token and If-Match checks are not atomic with its write"),
  // so two holders whose PUTs interleave both get through; scripts/flake_hunt.sh under load saw
  // 2 of 2,000 updates lost here in 1 run of 20 (docs/adapters/webdav_lock.md). Whether a run
  // loses any depends on Apache's scheduling: losses are reported, not asserted. What must hold
  // is that every operation finished, no refused write landed and every value comes from a
  // write the harness made.
  if (r.lost() > 0)
    WARN("update_under_lock against Apache mod_dav lost " << r.lost() << " of " << r.operations);
  CHECK(r.check.anomalies.empty());
}
}  // namespace

TEST_CASE(
    "race harness: update_under_lock against Apache mod_dav, forced window, 16 writers x 2,000 ops on 4 keys",
    "[server][webdav][harness][concurrency]") {
  harness_run(true);
}

TEST_CASE("race harness: update_under_lock against Apache mod_dav, stress, 16 writers x 2,000 ops on 1 key",
          "[server][webdav][harness][concurrency]") {
  harness_run(false);
}

namespace {
// Runs `body` in a forked child; the child's exit status is body's return value (or 99 when it threw).
template <class Body>
pid_t fork_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (...) {
      rc = 98;
    }
    std::fflush(stdout);
    ::_exit(rc);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
}  // namespace

// 4 writer processes (forked), 4 threads each, appending through update_under_lock to one key:
// every acknowledged append must be in the final value. A shared counter reports how often fn
// ran in two clients at once (both granted the lock).
TEST_CASE("webdav_lock: 4 writer processes x 4 threads, nothing lost",
          "[server][webdav][process][concurrency]") {
  constexpr int procs = 4;
  constexpr int threads_per_proc = 4;
  constexpr int ops = 25;  // per thread: 400 appends in all
  wl::store s(url());
  const std::string key = nc_test::unique_name("procs");
  REQUIRE(s.create_if_absent(key, "start;").ok());
  shared<holders> h;
  shared<std::atomic<int>> acked;
  // Start barrier across the processes: each child waits for EOF on `gate`, which comes when the
  // parent closes the write end after forking them all; its threads then start behind a latch.
  int gate[2];
  REQUIRE(::pipe(gate) == 0);
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    kids.push_back(fork_child([&, p] {
      ::close(gate[1]);
      char c;
      while (::read(gate[0], &c, 1) > 0) {
      }
      int failed = 0;
      std::latch start(threads_per_proc);
      std::vector<std::jthread> ts;
      std::atomic<int> bad{0};
      for (int t = 0; t < threads_per_proc; ++t) {
        ts.emplace_back([&, t] {
          wl::store me(url());
          start.arrive_and_wait();
          for (int i = 0; i < ops; ++i) {
            const std::string mine =
                "p" + std::to_string(p) + "t" + std::to_string(t) + "." + std::to_string(i) + ";";
            auto r = wl::update_under_lock(
                me, key,
                [&](const std::optional<std::string>& cur) {
                  h->enter();  // fn runs under the lock
                  std::this_thread::sleep_for(std::chrono::microseconds(200));
                  h->leave();
                  return cur.value_or("") + mine;
                },
                busy_policy(), short_lock());
            if (r.ok())
              acked->fetch_add(1);
            else
              bad.fetch_add(1);
          }
        });
      }
      ts.clear();
      failed = bad.load();
      return failed == 0 ? 0 : 1;
    }));
  }
  ::close(gate[0]);
  ::close(gate[1]);  // all forked: go
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  const auto fin = s.read(key);
  REQUIRE(fin.found());
  const std::size_t present = count_of(fin.value, ";") - 1;  // minus "start;"
  std::size_t missing = 0;
  for (int p = 0; p < procs; ++p) {
    for (int t = 0; t < threads_per_proc; ++t) {
      for (int i = 0; i < ops; ++i) {
        const std::string mine =
            "p" + std::to_string(p) + "t" + std::to_string(t) + "." + std::to_string(i) + ";";
        if (count_of(fin.value, mine) != 1) ++missing;
      }
    }
  }
  std::printf(
      "[webdav_lock] 4 processes x 4 threads x %d appends: acknowledged %d, in the final value %zu, "
      "missing %zu; fn ran %ld times, %ld of them beside another holder (most at once %d)\n",
      ops, acked->load(), present, missing, h->entries.load(), h->overlaps.load(), h->most.load());
  std::fflush(stdout);
  CHECK(acked->load() == procs * threads_per_proc * ops);
  CHECK(missing == 0);
  CHECK(present == static_cast<std::size_t>(procs * threads_per_proc * ops));
  // fn sometimes runs in two clients at once (the LOCK finding); their PUTs are what is refused.
}

// A holder SIGKILLed while holding the lock: others get 423 until the lock's Timeout, then go
// on; what the dead holder had written stays, nothing else is lost.
TEST_CASE("webdav_lock: a holder killed with SIGKILL and others proceed after the timeout",
          "[server][webdav][process][concurrency]") {
  const std::string u = url();
  wl::store s(u);
  const auto hold = std::chrono::seconds(4);
  for (const bool existing : {true, false}) {
    DYNAMIC_SECTION(
        (existing ? "existing key, killed after its PUT" : "absent key (lock-null), killed before")) {
      const std::string key = nc_test::unique_name(existing ? "killed" : "killed-null");
      if (existing) REQUIRE(s.create_if_absent(key, "start;").ok());
      int fds[2];
      REQUIRE(::pipe(fds) == 0);
      const pid_t kid = fork_child([&] {
        ::close(fds[0]);
        wl::store me(u);
        if (!me.lock(key, {hold, "doomed"}).ok()) return 2;
        // The lock's life starts here: the clock is shared with the parent (steady_clock).
        const auto granted = std::chrono::steady_clock::now().time_since_epoch().count();
        if (existing) {
          auto r = me.read(key);
          if (!r.found() || !me.write_if_match(key, r.token, r.value + "dead;").ok()) return 3;
        }
        (void)!::write(fds[1], &granted, sizeof granted);
        ::pause();  // holds the lock until killed
        return 0;
      });
      ::close(fds[1]);
      std::chrono::steady_clock::rep granted = 0;
      REQUIRE(::read(fds[0], &granted, sizeof granted) == static_cast<ssize_t>(sizeof granted));
      ::close(fds[0]);
      const std::chrono::steady_clock::time_point locked_at{std::chrono::steady_clock::duration{granted}};
      ::kill(kid, SIGKILL);
      CHECK(wait_child(kid) == 128 + SIGKILL);
      if (!existing) CHECK(s.read(key).status == read_status::absent);  // lock-null: still 404

      // 4 threads × 10 appends, each waiting out the dead holder's lock.
      std::atomic<int> ok{0};
      std::atomic<long> refused{0};
      std::atomic<long> first_ms{1000000};
      {
        std::vector<std::jthread> ts;
        for (int t = 0; t < 4; ++t) {
          ts.emplace_back([&, t] {
            wl::store me(u);
            for (int i = 0; i < 10; ++i) {
              const std::string mine = "t" + std::to_string(t) + "." + std::to_string(i) + ";";
              auto r = wl::update_under_lock(
                  me, key, [&](const std::optional<std::string>& cur) { return cur.value_or("") + mine; });
              if (!r.ok()) continue;
              ok.fetch_add(1);
              const long ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - locked_at)
                                  .count();
              long f = first_ms.load();
              while (ms < f && !first_ms.compare_exchange_weak(f, ms)) {
              }
            }
            refused.fetch_add(static_cast<long>(me.stats().refused));
          });
        }
      }
      const auto fin = s.read(key);
      REQUIRE(fin.found());
      std::printf(
          "[webdav_lock] holder SIGKILLed (%s, Timeout: Second-4): first update %ld ms after its LOCK, "
          "%ld LOCKs refused meanwhile, %d of 40 updates applied, final value has %zu entries\n",
          existing ? "existing key" : "lock-null", first_ms.load(), refused.load(), ok.load(),
          count_of(fin.value, ";"));
      std::fflush(stdout);
      CHECK(ok.load() == 40);
      CHECK(refused.load() > 0);
      // Nobody got in while the dead holder's lock lived: at least N − 1 = 3 s (mod_dav counts whole
      // seconds) from the server's grant, which the holder's clock saw a moment later. The clock
      // starts in the holder, not here: its GET and PUT, the kill and the wait (seconds on a loaded
      // machine) are not in the margin. N = 4 leaves the threads ≥ 2 s to be refused at least once.
      // Not asserted: mod_dav_fs's lock database is not safe against simultaneous LOCKs (the two
      // `finding` tests above), so the waiting threads' own LOCKs can replace the dead holder's
      // record and one gets in early (a CI run saw 804 ms). Reported, as the finding it is.
      if (first_ms.load() < 2000) WARN("a LOCK got in " << first_ms.load() << " ms after the dead holder's");
      CHECK(count_of(fin.value, ";") == (existing ? 42u : 40u));
      if (existing) CHECK(count_of(fin.value, "dead;") == 1);
    }
  }
}

// Not run by default ([.]): a harder try at making update_under_lock lose an update — 64 writers
// on one key, fn holding the lock 2 ms longer. Run it by name against your server:
//   test_server_webdav_lock "[explore]"
TEST_CASE("race harness: update_under_lock, 64 writers on one key, slow fn", "[.][explore][webdav]") {
  using S = wl::store;
  const std::string u = url();
  constexpr unsigned writers = 64;
  std::vector<std::unique_ptr<S>> clients;
  for (unsigned i = 0; i < writers; ++i) clients.push_back(std::make_unique<S>(u));
  auto make = [&](unsigned i) -> S& { return *clients[i]; };
  auto opt = nc_harness::options<S>("apache", "webdav-lock-slow", noclobber::race_mode::stress, 50,
                                    nc_harness::fresh_keys("davlock-slow", 1));
  opt.writers = writers;
  auto slow = [](auto& view, const std::string& key, auto& fn) {
    auto r = wl::update_under_lock(
        view.inner(), view, key,
        [&](const std::optional<std::string>& cur) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          return fn(cur);
        },
        busy_policy(), wl::lock_options{std::chrono::seconds(3), "explore"});
    if (!r.ok()) throw std::runtime_error("gave up: " + r.last_error.code + " " + r.last_error.message);
  };
  auto r = noclobber::run_race_per_writer(make, slow, opt);
  std::size_t refused_writes = 0;
  for (auto& c : clients) refused_writes += c->stats().refused_writes;
  std::printf(
      "[webdav_lock] explore: 64 writers x 50 ops on 1 key, fn +2 ms: ops %zu, op errors %zu, applied %zu, "
      "LOST %zu, PUTs refused for the token %zu, %.1f s\n",
      r.operations, r.op_errors, r.check.applied, r.lost(), refused_writes,
      static_cast<double>(r.elapsed.count()) / 1e9);
  std::fflush(stdout);
  INFO(r.to_text());
  // Ops that gave up (60 s of 423s) are a liveness cost, reported above; a loss is the failure.
  CHECK(r.lost() == 0);
  CHECK(r.check.ok());
}
