// The HTTP ETag store against Apache mod_dav, through the race harness (see harness_common.hpp).
#include <memory>
#include <noclobber/adapters/http_etag.hpp>

#include "harness_common.hpp"
#include "server_env.hpp"

using namespace nc_harness;

// Apache httpd 2.4 mod_dav with FileETag Digest. What the harness found (docs/adapters/http_etag.md):
// its precondition check and its write are not atomic. Two PUTs with the same If-Match (or two
// If-None-Match: * creates) can both pass the check and both answer 2xx, so CAS alone loses
// updates against this server. An in-process per-key lock in front of CAS (the object_store_file fix's second
// layer) serialises one process's writers and loses nothing; it cannot protect across processes.
TEST_CASE("race harness: http_etag against Apache mod_dav", "[server][http][harness][concurrency]") {
  using S = noclobber::http_etag::store;
  using noclobber::race_mode;
  const std::string url = nc_test::server_env("NOCLOBBER_DAV_URL");
  auto make = [&](unsigned) { return std::make_unique<S>(url); };
  SECTION("naive, forced window: 15 of 16 writes lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<S>("apache", "naive", race_mode::forced, 1, fresh_keys("naive", 1)));
    INFO(r.to_text());
    CHECK(r.lost() == writers - 1);
  }
  SECTION("finding: CAS alone loses updates, because mod_dav's conditional PUT is not atomic") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::cas_strategy{},
        options<S>("apache", "cas", race_mode::forced, ops_per_writer, fresh_keys("cas", 4)));
    INFO(r.to_text());
    CHECK(r.op_errors == 0);
    // Every lost write was answered 2xx to an If-Match whose ETag another 2xx had already replaced.
    // How many depends on how Apache's workers interleave, so it is reported, not asserted; the
    // mechanism is shown for sure by "http_etag: finding (forced window)" (test_server_http_etag).
    WARN("CAS alone against Apache mod_dav, 16 writers x 125 ops: lost " << r.lost() << ", lost-update pairs "
                                                                         << r.check.lost_update_pairs);
  }
  SECTION("lock + CAS in one process, 2,000 ops: nothing lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::locked_cas_strategy<std::string>{},
        options<S>("apache", "lock+cas", race_mode::forced, ops_per_writer, fresh_keys("locked", 4)));
    INFO(r.to_text());
    CHECK(r.writers_serialised);  // the per-key lock spans read and write: the barrier times out
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == 0);
    CHECK(r.check.ok());
  }
}
