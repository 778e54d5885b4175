// Fuzz target: the etcd lease backend's reading of etcd's JSON gateway (lease grant, the txn that
// creates the lock key, keep-alive, revoke), end to end through libcurl and lease_lock_map, against
// a scripted loopback server (scripted_server.hpp).
//
// Input: the map's TTL and a lock key, then answers for try_lock (grant, txn, and the revoke that
// follows a busy txn), renew (keep-alive) and unlock (revoke); each answer is raw bytes or built
// from fields (status, an etcd error document, or the answer's JSON with int64 fields written as
// etcd writes them, as strings, or as numbers, or as any text).
//
// Checked: no crash, leak or undefined behaviour (a TTL the server grants is turned into a local
// deadline: it must not overflow); against a reference written here for built answers:
// try_lock acquired exactly when the grant has an ID and a TTL in etcd's range (1 to
// 9,000,000,000 s) and the txn succeeded with a positive header.revision; busy when the txn did
// not succeed; lease_error otherwise; the token is the revision, the owner the lease ID, the TTL
// the granted one; the txn creates base64(prefix + key) under that lease; renew answers held for a
// keep-alive with TTL > 0, lost without one, unknown without an answer; unlock held / lost (gRPC
// NotFound) / unknown.
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include "fuzz_support.hpp"

#include "noclobber/adapters/detail/base64.hpp"
#include "noclobber/adapters/etcd_lease.hpp"
#include "noclobber/lease_lock.hpp"
#include "scripted_server.hpp"

namespace {

using noclobber::lease_check;

/// An int64 field as the gateway may write it, and the value a reader must take from it.
struct field {
  std::string json;                   // what goes after "name": (nothing: the field is left out)
  std::optional<std::int64_t> value;  // the int64 it holds, when it holds one
};

field field_from(nc_fuzz::reader& in) {
  const std::uint8_t how = in.u8();
  if (how % 8 == 0) return {};  // missing
  if (how % 8 == 1) {           // any text in a string
    std::string t = in.short_string();
    // Valid JSON text only (the gateway writes UTF-8; a document with invalid UTF-8 is no answer
    // to nlohmann/json, which raw answers cover): no quote, backslash, control or non-ASCII byte.
    for (char& c : t)
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 ||
          static_cast<unsigned char>(c) >= 0x80)
        c = 'x';
    return {"\"x" + t + "\"", std::nullopt};  // 'x' first: never an int64
  }
  // Near etcd's largest TTL (4 bytes), or an edgy int64.
  const std::int64_t v = how % 8 == 2 ? static_cast<std::int64_t>(in.u32()) * 3 : in.edgy_i64();
  const std::string digits = std::to_string(v);
  return {how % 8 == 3 ? digits : "\"" + digits + "\"", v};
}

/// One answer of the script: raw bytes, or built (status + body), with what the reference needs.
struct built_answer {
  bool raw = false;
  bool ok = false;                // a 200 whose body is an etcd answer (not an error document)
  std::int64_t grpc_code = -1;    // an error document's code
  std::optional<std::int64_t> a;  // grant: ID; txn: header.revision; keep-alive: result.TTL
  std::optional<std::int64_t> b;  // grant: TTL
  std::optional<bool> succeeded;  // txn
  std::string wire;
};

enum class kind : unsigned char { grant, txn, keepalive, revoke };

built_answer answer_from(nc_fuzz::reader& in, kind k) {
  built_answer out;
  const std::uint8_t how = in.u8();
  if (how % 10 == 0) {
    out.raw = true;
    out.wire = in.bytes(in.u16() % 512);
    return out;
  }
  long status = 200;
  std::string body;
  if (how % 10 == 1) {  // an etcd error document
    static const long statuses[] = {400, 404, 500, 503, 200};
    status = statuses[in.u8() % 5];
    out.grpc_code = in.u8() % 16;
    body = R"({"error":"etcdserver: x","code":)" + std::to_string(out.grpc_code) + R"(,"message":"x"})";
  } else if (how % 10 == 2) {
    status = 200 + in.u16() % 400;
    body = "x" + in.short_string();  // never JSON
  } else {
    const field f1 = field_from(in), f2 = field_from(in);
    auto member = [](const char* name, const field& f) {
      return f.json.empty() ? std::string() : "\"" + std::string(name) + "\":" + f.json + ",";
    };
    const std::string header =
        R"("header":{"cluster_id":"1",)" + member("revision", f1) + R"("raft_term":"2"})";
    switch (k) {
      case kind::grant:
        body = "{" + member("ID", f1) + member("TTL", f2) + header + "}";
        out.a = f1.json.empty() ? std::nullopt : f1.value;
        out.b = f2.json.empty() ? std::nullopt : f2.value;
        break;
      case kind::txn: {
        const std::uint8_t s = in.u8() % 4;
        if (s < 2) out.succeeded = s == 1;
        body = "{" + header + (s < 2 ? std::string(",\"succeeded\":") + (s ? "true" : "false") : "") + "}";
        out.a = f1.json.empty() ? std::nullopt : f1.value;
        break;
      }
      case kind::keepalive:
        body = "{\"result\":{" + header + "," + member("ID", f2) + member("TTL", f1) + "\"x\":1}}";
        out.a = f1.json.empty() ? std::nullopt : f1.value;
        break;
      case kind::revoke:
        body = "{" + header + "}";
        break;
    }
    out.ok = true;
  }
  out.wire = "HTTP/1.1 " + std::to_string(status) +
             " X\r\nConnection: close\r\nContent-Type: application/json\r\n" +
             "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  // What the backend must make of it: a JSON error document or another status is no answer.
  out.ok = out.ok && status == 200;
  if (status != 200 && out.grpc_code < 0) out.grpc_code = -1;
  return out;
}

constexpr std::int64_t max_ttl_s = 9'000'000'000;  // etcd's MaxLeaseTTL

std::string request_body(const std::string& request) {
  const auto at = request.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : request.substr(at + 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nc_fuzz::reader in(data, size);
  const auto ttl = std::chrono::milliseconds(1 + in.u32() % 100'000);
  std::string key = in.u8() % 4 == 0 ? in.short_string() : "k" + std::to_string(in.u8() % 4);
  if (key.empty()) key = "k";

  // The script: grant, txn, then (after a busy txn) the revoke; keep-alive; revoke.
  std::deque<std::string> wire;
  std::vector<built_answer> answers;
  for (kind k : {kind::grant, kind::txn, kind::revoke, kind::keepalive, kind::revoke}) {
    answers.push_back(answer_from(in, k));
    wire.push_back(answers.back().wire);
  }
  const built_answer& grant = answers[0];
  const built_answer& txn = answers[1];
  const bool grant_ok = grant.ok && grant.a && grant.b && *grant.b >= 1 && *grant.b <= max_ttl_s;
  const bool acquired = grant_ok && txn.ok && txn.succeeded == true && txn.a && *txn.a > 0;
  const bool busy = grant_ok && txn.ok && txn.succeeded != true;
  const bool exact = !grant.raw && !txn.raw;
  if (!busy) {  // no revoke after the txn: the script moves up
    wire.erase(wire.begin() + 2);
    answers.erase(answers.begin() + 2);
  }

  nc_fuzz::scripted_server server(wire);
  noclobber::etcd::lease_backend backend(server.url(), "lk/", std::chrono::seconds(10));
  noclobber::lease_lock_map<noclobber::etcd::lease_backend> map(backend, ttl);
  const auto before = std::chrono::steady_clock::now();
  std::optional<noclobber::lease_lock_map<noclobber::etcd::lease_backend>::guard> g;
  bool failed = false;
  try {
    g.emplace(map.try_lock(key));
  } catch (const noclobber::lease_error&) {
    failed = true;
  }
  const bool got = g && g->owns_lock();
  if (exact) {
    NC_FUZZ_CHECK(got == acquired && failed == (!acquired && !busy), std::string("try_lock: got ") +
                                                                         (got      ? "acquired"
                                                                          : failed ? "failed"
                                                                                   : "busy") +
                                                                         ", want " +
                                                                         (acquired ? "acquired"
                                                                          : busy   ? "busy"
                                                                                   : "failed"));
  }
  if (got) {
    const noclobber::lease_grant& gr = g->grant();
    NC_FUZZ_CHECK(
        gr.token > 0 && gr.ttl >= std::chrono::seconds(1) && gr.ttl <= std::chrono::seconds(max_ttl_s),
        "a grant out of range: token " + std::to_string(gr.token) + ", ttl " +
            std::to_string(gr.ttl.count()) + " ms");
    NC_FUZZ_CHECK(g->expires_at() >= before + std::min<std::chrono::milliseconds>(gr.ttl, ttl),
                  "the local deadline is before the TTL");
    if (exact) {
      NC_FUZZ_CHECK(gr.token == static_cast<noclobber::fencing_token>(*txn.a), "token is not the revision");
      NC_FUZZ_CHECK(gr.owner == std::to_string(*grant.a), "owner is not the lease ID");
      NC_FUZZ_CHECK(gr.ttl == std::chrono::seconds(*grant.b), "ttl is not the granted TTL");
      // The txn created prefix + key under that lease.
      const std::vector<std::string> seen = server.requests();
      NC_FUZZ_CHECK(seen.size() >= 2, "fewer than two requests");
      const auto doc = nlohmann::json::parse(request_body(seen[1]), nullptr, false);
      NC_FUZZ_CHECK(!doc.is_discarded(), "the txn request is not JSON: " + seen[1]);
      const std::string k = noclobber::detail::base64_encode("lk/" + key);
      NC_FUZZ_CHECK(seen[1].find("\"key\":\"" + k + "\"") != std::string::npos &&
                        seen[1].find("\"lease\":\"" + gr.owner + "\"") != std::string::npos,
                    "the txn does not create the lock key under the lease: " + seen[1]);
    }
    // After a raw answer libcurl may hold a connection the server closed: only exact scripts
    // are checked past try_lock.
    const built_answer& keepalive = answers[2];
    const lease_check c = g->renew();
    if (exact && !keepalive.raw) {
      const lease_check want = !keepalive.ok                     ? lease_check::unknown
                               : keepalive.a && *keepalive.a > 0 ? lease_check::held
                                                                 : lease_check::lost;
      NC_FUZZ_CHECK(c == want,
                    "renew: got " + std::to_string(int(c)) + ", want " + std::to_string(int(want)));
    }
    if (c != lease_check::lost) {
      const built_answer& revoke = answers[3];
      const lease_check u = g->unlock();
      if (exact && !keepalive.raw && !revoke.raw) {
        const lease_check want = revoke.ok               ? lease_check::held
                                 : revoke.grpc_code == 5 ? lease_check::lost
                                                         : lease_check::unknown;
        NC_FUZZ_CHECK(u == want,
                      "unlock: got " + std::to_string(int(u)) + ", want " + std::to_string(int(want)));
      }
    }
  }
  g.reset();
  return 0;
}
