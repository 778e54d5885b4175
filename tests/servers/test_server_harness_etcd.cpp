// The etcd store proven by the race harness (see harness_common.hpp). Eight keys: each etcd write
// waits for a raft commit and fsync, so contention on four keys made this the slowest test.
#include <memory>
#include <noclobber/adapters/etcd.hpp>

#include "harness_common.hpp"
#include "server_env.hpp"

using namespace nc_harness;

TEST_CASE("race harness: etcd mod_revision", "[server][etcd][harness][concurrency]") {
  const std::string url = nc_test::server_env("NOCLOBBER_ETCD_URL");
  prove_adapter<noclobber::etcd::store>(
      "etcd", [&](unsigned) { return std::make_unique<noclobber::etcd::store>(url); }, 8);
}
