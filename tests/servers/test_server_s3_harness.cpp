// The S3 adapter through the race harness against real servers (see harness_common.hpp): 16
// writers, one store (one connection) each. What it found is in docs/adapters/s3.md; each finding
// is asserted, so a server that changes its behaviour fails here:
//   radosgw 16.2  enforces If-Match / If-None-Match: * atomically: CAS loses nothing. Writers that
//                 race inside its check-then-write window get 500 UnknownError (ECANCELED from the
//                 head object's idtag guard) instead of 412; the adapter reports those
//                 indeterminate (a 500 may follow a write), and none of them had landed.
//   s3rver 3.7.1  ignores both headers on PUT: CAS (with the probe overridden) loses updates.
#include <noclobber/adapters/s3.hpp>

#include <memory>

#include "harness_common.hpp"
#include "test_server_s3_common.hpp"

using namespace nc_harness;
using S = noclobber::s3::store;
using noclobber::race_mode;

namespace {

auto maker(nc_s3::server srv, noclobber::s3::enforcement check) {
  return [srv, check](unsigned) { return std::make_unique<S>(nc_s3::options_for(srv, check)); };
}

}  // namespace

TEST_CASE("race harness: s3 on radosgw: naive loses updates (forced and 2000 ops)",
          "[server][s3][radosgw][harness]") {
  auto make = maker(nc_s3::server::radosgw, noclobber::s3::enforcement::probe);
  SECTION("forced window: 15 of 16 writes lost") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<S>("radosgw", "naive", race_mode::forced, 1, fresh_keys("s3/naive-forced", 1)));
    INFO(r.to_text());
    WARN(r.to_text());
    CHECK(r.op_errors == 0);
    CHECK(r.lost() == writers - 1);
  }
  SECTION("2,000 free-running ops") {
    auto r = noclobber::run_race_per_writer(
        make, noclobber::naive_strategy{},
        options<S>("radosgw", "naive", race_mode::stress, ops_per_writer, fresh_keys("s3/naive-stress", 4)));
    INFO(r.to_text());
    WARN(r.to_text());
    CHECK(r.operations == writers * ops_per_writer);
    CHECK(r.lost() > 0);
  }
}

namespace {

// CAS on radosgw: nothing lost, and the writes whose answer was a 500 never landed.
void check_radosgw_cas(const noclobber::race_report& r) {
  INFO(r.to_text());
  WARN(r.to_text());
  CHECK(r.operations == writers * ops_per_writer);
  CHECK(r.op_errors == 0);
  CHECK(r.lost() == 0);
  CHECK(r.check.ok());
  CHECK(r.check.unknown_landed == 0);  // radosgw's 500s under contention were not applied
}

}  // namespace

TEST_CASE("race harness: s3 on radosgw: CAS in the forced window then 2000 ops",
          "[server][s3][radosgw][harness]") {
  check_radosgw_cas(noclobber::run_race_per_writer(
      maker(nc_s3::server::radosgw, noclobber::s3::enforcement::probe), noclobber::cas_strategy{},
      options<S>("radosgw", "cas", race_mode::forced, ops_per_writer, fresh_keys("s3/cas", 4))));
}

TEST_CASE("race harness: s3 on radosgw: CAS with 2000 free-running ops", "[server][s3][radosgw][harness]") {
  check_radosgw_cas(noclobber::run_race_per_writer(
      maker(nc_s3::server::radosgw, noclobber::s3::enforcement::probe), noclobber::cas_strategy{},
      options<S>("radosgw", "cas", race_mode::stress, ops_per_writer, fresh_keys("s3/cas-stress", 4))));
}

// One forced round is enough here (and keeps the test short: s3rver answers ~40 writes/s): all 16
// read the same ETag, all 16 conditional PUTs are accepted, 15 updates are gone.
TEST_CASE("race harness: s3 on s3rver: CAS loses updates (preconditions ignored)",
          "[server][s3][s3rver][harness]") {
  auto make = maker(nc_s3::server::s3rver, noclobber::s3::enforcement::trust);
  auto r = noclobber::run_race_per_writer(
      make, noclobber::cas_strategy{},
      options<S>("s3rver", "cas", race_mode::forced, 1, fresh_keys("s3/cas", 1)));
  INFO(r.to_text());
  WARN(r.to_text());
  CHECK(r.op_errors == 0);
  CHECK(r.check.applied == writers);  // every write told "applied"
  CHECK(r.lost() == writers - 1);
}
