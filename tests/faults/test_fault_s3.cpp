// The S3 adapter under faults: single-node Ceph (scripts/clusters/radosgw.sh), 16 writers
// through read_modify_write on 8 objects, one s3::store (one connection) each, while the nemesis
// SIGKILLs radosgw and starts it again (the monitor and the OSD, which holds the objects, keep
// running). A PUT in flight at the kill gets no answer (indeterminate: it may have reached the
// OSD); while radosgw is down every request is refused (transient). Expectation to confirm:
// nothing acknowledged is lost or vanishes, nothing is applied twice, nothing the store called
// "not applied" landed, and no op gives up other than `indeterminate` (see below).
//
// CI runs the short form (16 writers x 40 ops, 2 faults); NOCLOBBER_FAULT_OPS / _WRITERS /
// _FAULTS / _SEED make longer runs (see fault_run.hpp).
#include <noclobber/adapters/s3.hpp>
#include <noclobber/race_harness/posix/process.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <thread>

#include "faults/cluster.hpp"
#include "faults/fault_check.hpp"

namespace posix = noclobber::posix;
using nc_faults::cluster;

namespace {

noclobber::s3::options rgw_options(const cluster& c) {
  noclobber::s3::options o;
  o.endpoint = c.env("NOCLOBBER_RGW_ENDPOINT");
  o.bucket = c.env("NOCLOBBER_RGW_BUCKET");
  o.creds.access_key_id = c.env("NOCLOBBER_RGW_ACCESS_KEY");
  o.creds.secret_access_key = c.env("NOCLOBBER_RGW_SECRET_KEY");
  o.timeout = std::chrono::seconds(5);  // a request that hangs becomes an answer the loop can use
  return o;                             // enforcement::probe: the store checks radosgw first
}

// radosgw's process, read from the state folder (fast: the nemesis picks its target while the
// writers run).
posix::process_target radosgw_of(const cluster& c) {
  const pid_t pid = posix::read_pid_file(c.state() + "/radosgw/rgw.pid");
  return {{pid}, "radosgw", "rgw"};
}

}  // namespace

TEST_CASE("radosgw SIGKILLed and restarted under 16 S3 writers: nothing lost, vanished or doubled",
          "[fault][s3][radosgw][kill]") {
  cluster c("radosgw.sh");
  const noclobber::s3::options o = rgw_options(c);

  nc_faults::fault_case<noclobber::s3::store> fc;
  fc.store_name = "radosgw";
  fc.fault_name = "kill-radosgw";
  nc_faults::size_from_env(fc);
  fc.make_store = [o](unsigned) { return std::make_unique<noclobber::s3::store>(o); };
  fc.actions = {std::make_shared<posix::kill_fault>(
      "kill-radosgw", [&c](std::uint64_t) { return radosgw_of(c); }, c.command("restart"))};
  fc.settle = [o] {  // radosgw answers again (restart waited for it; this checks the S3 path)
    noclobber::s3::store probe_store(o);
    for (int i = 0; i < 300; ++i) {
      const auto r = probe_store.read("settle-check");
      if (r.status == noclobber::read_status::found || r.status == noclobber::read_status::absent) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };

  const auto r = nc_faults::run_fault_case(fc);
  nc_faults::check_run(r, fc.nemesis.faults);
  nc_faults::check_no_loss(r);
  // Every op rode the outage out (refused requests are retried for up to 40 s): the ops that did
  // not end applied all ended `indeterminate` — a request without an answer at the kill, or one of
  // radosgw's 500 UnknownError answers to a writer that lost a race inside its check-then-write
  // window (docs/adapters/s3.md), after which the key had changed — never transient or permanent.
  std::size_t not_indeterminate = 0;
  std::string told;
  for (const nc_faults::op_record& op : r.ops) {
    if (op.outcome == noclobber::rmw_outcome::applied) continue;
    if (!op.unresolved || op.threw) {
      ++not_indeterminate;
      if (told.size() < 2000) told += "W" + std::to_string(op.writer) + ": " + op.error + "\n";
    }
  }
  INFO(told);
  CHECK(not_indeterminate == 0);
  CHECK(r.counts.indeterminate_unresolved == r.counts.errors);
}
