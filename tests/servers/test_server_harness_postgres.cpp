// The PostgreSQL store proven by the race harness (see harness_common.hpp).
#include <memory>
#include <noclobber/adapters/postgres.hpp>

#include "harness_common.hpp"
#include "server_env.hpp"

using namespace nc_harness;

TEST_CASE("race harness: postgres store", "[server][postgres][harness][concurrency]") {
  const std::string conninfo = nc_test::server_env("NOCLOBBER_PG_CONNINFO");
  const std::string table = nc_test::unique_name("nc_harness");
  noclobber::postgres::store admin(conninfo, table);
  admin.ensure_table();
  prove_adapter<noclobber::postgres::store>(
      "postgres", [&](unsigned) { return std::make_unique<noclobber::postgres::store>(conninfo, table); });
  (void)admin.conn().exec_simple("DROP TABLE " + table + "; DROP SEQUENCE " + table + "_version", true);
}
