// The PostgreSQL version_store proven by the race harness (see harness_common.hpp).
#include <memory>
#include <noclobber/adapters/postgres.hpp>

#include "harness_common.hpp"
#include "server_env.hpp"

using namespace nc_harness;

TEST_CASE("race harness: postgres version_store", "[server][postgres][harness][concurrency]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const std::string table = nc_test::unique_name("nc_harness");
  noclobber::postgres::version_store admin(conninfo, table);
  admin.ensure_table();
  prove_adapter<noclobber::postgres::version_store>("postgres", [&](unsigned) {
    return std::make_unique<noclobber::postgres::version_store>(conninfo, table);
  });
  (void)admin.conn().exec_simple("DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version", true);
}
