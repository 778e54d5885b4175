// The SQLite file kept as one object-store object (docs/scenarios.md), on the S3 API itself: a
// service keeps a SQLite database as one object; each writer downloads it, adds a row, uploads it.
// The naive download -> modify -> put_object loses rows; the fix — If-Match on the upload (412:
// evict the cached copy, download again, retry with jittered backoff), If-None-Match: * for the
// first create, a per-key lock inside the process — loses none. 16 writers, as threads and as 4
// processes × 4 threads. On radosgw, which enforces both headers; on s3rver, which ignores them,
// the probe refuses to write and CAS (forced through) loses rows.
//
// Each writer's row has a unique name and the update is idempotent (a row already there means
// done: `keep`), so a write whose outcome is unknown — radosgw answers 500 to some racing
// conditional PUTs — is resolved by running the update again.
#include <sys/wait.h>
#include <unistd.h>
#include <noclobber/adapters/s3.hpp>
#include <noclobber/cached_store.hpp>
#include <noclobber/keyed_mutex_map.hpp>
#include <noclobber/locked_read_modify_write.hpp>
#include <noclobber/read_modify_write.hpp>

#include <atomic>
#include <barrier>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_env.hpp"
#include "sqlite_image.hpp"
#include "test_server_s3_common.hpp"

namespace s3 = noclobber::s3;
using nc_s3::server;
using nc_sqlite::sqlite_db;

namespace {

constexpr int writers = 16, rows_per_writer = 3;

using cache_t = noclobber::store_cache<std::string, std::string, std::string>;
using locks_t = noclobber::keyed_mutex_map<std::string>;

// The row `name`, unless it is there already. `first_read` (optional) holds every writer at its
// first download until all writers have downloaded: the forced window.
auto add_row_once(const std::string& name, std::barrier<>* first_read = nullptr) {
  return [name, first_read,
          waited = false](const std::optional<std::string>& image) mutable -> noclobber::update<std::string> {
    if (first_read && !waited) {
      waited = true;
      first_read->arrive_and_wait();
    }
    sqlite_db db(image);
    if (db.has(name)) return noclobber::keep;
    db.exec("INSERT INTO assets VALUES ('" + name + "', " + std::to_string(name.size()) + ")");
    return db.image();
  };
}

noclobber::retry_policy fix_policy() {
  noclobber::retry_policy p;  // jittered exponential backoff, as the original fix
  p.max_attempts = 200;
  p.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(50));
  return p;
}

std::atomic<int> unknown_outcomes{0};  // read_modify_write calls that ended indeterminate

// One row through the fix: read_modify_write (with the per-key lock when `locks` is given), run
// again while the outcome is unknown. False when it gave up for any other reason.
template <class Store, class Fn>
bool add_row(Store& s, locks_t* locks, const std::string& key, Fn fn) {
  for (int round = 0; round < 20; ++round) {
    auto r = locks ? noclobber::locked_read_modify_write(*locks, s, key, fn, fix_policy())
                   : noclobber::read_modify_write(s, key, fn, fix_policy());
    if (r.ok()) return true;
    if (!r.indeterminate) return false;
    unknown_outcomes.fetch_add(1);
  }
  return false;
}

std::set<std::string> rows_in(server srv, const std::string& key) {
  s3::store s(nc_s3::options_for(srv));
  auto r = s.read(key);
  REQUIRE(r.found());
  return sqlite_db(r.value).names();
}

std::string row_name(int process, int writer, int row) {
  return "p" + std::to_string(process) + "-w" + std::to_string(writer) + "-r" + std::to_string(row);
}

}  // namespace

TEST_CASE("object_store_file on radosgw: 16 writers, lock + If-Match through a shared cache, no row lost",
          "[server][s3][radosgw][object_store_file]") {
  const std::string key = nc_test::unique_name("locations") + ".sqlite";  // absent: the creation race
  locks_t locks;
  cache_t cache;
  std::vector<std::unique_ptr<s3::store>> stores;
  for (int i = 0; i < writers; ++i)
    stores.push_back(std::make_unique<s3::store>(nc_s3::options_for(server::radosgw)));
  std::barrier start(writers);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      noclobber::cached_store<s3::store> view(*stores[static_cast<std::size_t>(w)], cache);
      start.arrive_and_wait();
      for (int row = 0; row < rows_per_writer; ++row) {
        if (!add_row(view, &locks, key, add_row_once(row_name(0, w, row)))) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failures == 0);
  CHECK(rows_in(server::radosgw, key).size() == writers * rows_per_writer);
  // Writers queue on the lock, so each update finds the copy the previous one uploaded: a
  // conditional GET answered 304 instead of a download.
  CHECK(cache.stats().revalidated > 0);
}

TEST_CASE("object_store_file on radosgw: 16 writers, If-Match alone, all downloaded before any upload",
          "[server][s3][radosgw][object_store_file]") {
  const std::string key = nc_test::unique_name("locations") + ".sqlite";
  s3::store seed(nc_s3::options_for(server::radosgw));
  REQUIRE(seed.create_if_absent(key, sqlite_db(std::nullopt).image()).ok());
  std::barrier first_read(writers);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      s3::store mine(nc_s3::options_for(server::radosgw));
      if (!add_row(mine, nullptr, key, add_row_once(row_name(0, w, 0), &first_read))) failures.fetch_add(1);
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failures == 0);
  CHECK(rows_in(server::radosgw, key).size() == writers);
  WARN("updates that ended with an unknown outcome and were run again: " << unknown_outcomes.exchange(0));
}

TEST_CASE(
    "object_store_file on radosgw: 4 processes x 4 threads, lock inside each process, If-Match "
    "across them, no row lost",
    "[server][s3][radosgw][object_store_file]") {
  const std::string key = nc_test::unique_name("locations") + ".sqlite";
  constexpr int processes = 4, threads = writers / processes;
  int gate[2];
  REQUIRE(::pipe(gate) == 0);
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the child: no Catch2 here; its exit status is its verdict
      ::close(gate[1]);
      char c;
      (void)!::read(gate[0], &c, 1);  // returns when the parent closes the gate: all start together
      locks_t locks;
      std::atomic<int> failures{0};
      std::vector<std::thread> ts;
      for (int w = 0; w < threads; ++w) {
        ts.emplace_back([&, w] {
          try {
            s3::store mine(nc_s3::options_for(server::radosgw));
            for (int row = 0; row < rows_per_writer; ++row) {
              if (!add_row(mine, &locks, key, add_row_once(row_name(p, w, row)))) failures.fetch_add(1);
            }
          } catch (...) {
            failures.fetch_add(1);
          }
        });
      }
      for (auto& t : ts) t.join();
      ::_exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  ::close(gate[0]);
  ::close(gate[1]);  // go
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  CHECK(rows_in(server::radosgw, key).size() == writers * rows_per_writer);
}

TEST_CASE("object_store_file on radosgw: the naive download-modify-put loses rows",
          "[server][s3][radosgw][object_store_file]") {
  const std::string key = nc_test::unique_name("locations") + ".sqlite";
  s3::store seed(nc_s3::options_for(server::radosgw));
  REQUIRE(seed.create_if_absent(key, sqlite_db(std::nullopt).image()).ok());
  std::barrier all_downloaded(writers);
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      s3::store mine(nc_s3::options_for(server::radosgw));
      auto r = mine.read(key);
      all_downloaded.arrive_and_wait();
      (void)mine.overwrite(key, add_row_once(row_name(0, w, 0))(r.value).value());
    });
  }
  for (auto& t : ts) t.join();
  CHECK(rows_in(server::radosgw, key).size() == 1);  // 15 of 16 rows silently lost
}

TEST_CASE("object_store_file on s3rver: the probe refuses to write, and CAS forced through loses rows",
          "[server][s3][s3rver][object_store_file]") {
  const std::string key = nc_test::unique_name("locations") + ".sqlite";
  SECTION("refused") {
    s3::store s(nc_s3::options_for(server::s3rver));
    auto r = noclobber::read_modify_write(s, key, add_row_once("first"), fix_policy());
    CHECK_FALSE(r.ok());
    CHECK(r.last_error.code == "PreconditionNotEnforced");
  }
  SECTION("trusted anyway: 16 writers, all downloaded before any upload, rows lost") {
    s3::store seed(nc_s3::options_for(server::s3rver, s3::enforcement::trust));
    REQUIRE(seed.create_if_absent(key, sqlite_db(std::nullopt).image()).ok());
    std::barrier first_read(writers);
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < writers; ++w) {
      ts.emplace_back([&, w] {
        s3::store mine(nc_s3::options_for(server::s3rver, s3::enforcement::trust));
        if (!add_row(mine, nullptr, key, add_row_once(row_name(0, w, 0), &first_read))) failures.fetch_add(1);
      });
    }
    for (auto& t : ts) t.join();
    CHECK(failures == 0);  // every writer was told "applied"...
    s3::store reader(nc_s3::options_for(server::s3rver, s3::enforcement::trust));
    CHECK(sqlite_db(reader.read(key).value).names().size() == 1);  // ...and 15 rows are gone
  }
}
