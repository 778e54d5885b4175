// etcd adapter against a real etcd 3.4 (NOCLOBBER_ETCD_URL, its JSON gateway): every outcome
// category, timeouts classified as indeterminate, the JSON/base64 helpers, four writer processes
// and a writer killed between its read and its write.
#include <noclobber/adapters/etcd.hpp>

#include <cstdint>
#include <limits>

#include "server_env.hpp"

namespace et = noclobber::etcd;
namespace json = noclobber::detail::json;
using noclobber::write_status;

namespace {
std::string url() {
  return nc_test::server_env("NOCLOBBER_ETCD_URL");
}
}  // namespace

TEST_CASE("etcd store: every outcome category against the server", "[server][etcd]") {
  et::store s(url());
  const std::string key = nc_test::unique_name("nc/contract");

  CHECK(s.read(key).status == noclobber::read_status::absent);
  auto c1 = s.create_if_absent(key, std::string("v1\0\xff", 4));
  REQUIRE(c1.status == write_status::applied);
  REQUIRE(c1.token.has_value());
  CHECK(s.create_if_absent(key, "other").status == write_status::exists);

  auto r1 = s.read(key);
  REQUIRE(r1.found());
  CHECK(r1.value == std::string("v1\0\xff", 4));
  CHECK(r1.token == *c1.token);  // the txn header's revision is the key's mod_revision

  auto w2 = s.write_if_match(key, r1.token, "v2");
  REQUIRE(w2.status == write_status::applied);
  CHECK(*w2.token > r1.token);
  CHECK(s.read(key).token == *w2.token);
  CHECK(s.write_if_match(key, r1.token, "lost").status == write_status::conflict);
  CHECK(s.read(key).value == "v2");

  CHECK(s.write_if_match(key + "/missing", r1.token, "x").status == write_status::absent);
  CHECK(s.erase_if_match(key, r1.token).status == write_status::conflict);
  CHECK(s.erase_if_match(key, *w2.token).status == write_status::applied);
  CHECK(s.read(key).status == noclobber::read_status::absent);
  CHECK(s.erase_if_match(key, *w2.token).status == write_status::absent);

  auto c3 = s.create_if_absent(key, "");  // an empty value: the gateway omits the field
  REQUIRE(c3.ok());
  CHECK(*c3.token > *w2.token);  // revisions only grow: no ABA across erase and re-create
  auto r3 = s.read(key);
  REQUIRE(r3.found());
  CHECK(r3.value.empty());
  CHECK(s.overwrite(key, "blind").ok());
  CHECK(s.read(key).value == "blind");

  // permanent: a request over etcd's --max-request-bytes (1.5 MiB).
  auto big = s.write_if_match(key, s.read(key).token, std::string(2 * 1024 * 1024, 'x'));
  CHECK(big.status == write_status::permanent);
  CHECK(s.read(key).value == "blind");
}

TEST_CASE("etcd: bad input and transport failures", "[server][etcd]") {
  CHECK_THROWS_AS(et::store("127.0.0.1:2379"), std::invalid_argument);
  CHECK_THROWS_AS(et::store("http://x", std::chrono::milliseconds(0)), std::invalid_argument);
  et::store ok(url());
  CHECK_THROWS_AS(ok.read(""), std::invalid_argument);

  et::store refused("http://127.0.0.1:" + std::to_string(nc_test::closed_port()));
  CHECK(refused.read("k").status == noclobber::read_status::transient);
  CHECK(refused.create_if_absent("k", "v").status == write_status::transient);  // nothing was sent

  nc_test::silent_listener silent;  // accepts, never answers: the request was sent
  et::store slow("http://127.0.0.1:" + std::to_string(silent.port()), std::chrono::milliseconds(200));
  CHECK(slow.read("k").status == noclobber::read_status::transient);
  auto w = slow.write_if_match("k", 5, "v");
  CHECK(w.status == write_status::indeterminate);  // never a conflict
  CHECK(slow.create_if_absent("k", "v").status == write_status::indeterminate);

  // gRPC errors in the gateway's body.
  const std::string body =
      R"({"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"})";
  nc_test::canned_http_server unavailable(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Connection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  et::store u(unavailable.url());
  CHECK(u.write_if_match("k", 5, "v").status == write_status::indeterminate);
  CHECK(u.read("k").status == noclobber::read_status::transient);
}

TEST_CASE("etcd: a kv whose value is not a base64 string is malformed", "[server][etcd]") {
  // Found by tests/fuzz/fuzz_http_answers: "value": null (or a number, an object) read as an
  // empty value instead of a malformed answer. (The gateway omits an empty value.)
  auto answer = [](const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  for (const char* value : {"null", "5", "{}", "[]", "true"}) {
    INFO(value);
    nc_test::canned_http_server s(
        answer(std::string(R"({"kvs":[{"mod_revision":"7","value":)") + value + "}]}"));
    const auto r = et::store(s.url()).read("k");
    CHECK(r.status == noclobber::read_status::permanent);
  }
  nc_test::canned_http_server omitted(answer(R"({"kvs":[{"mod_revision":"7"}]})"));
  const auto r = et::store(omitted.url()).read("k");
  REQUIRE(r.found());
  CHECK(r.value.empty());
  CHECK(r.token == 7);
}

TEST_CASE("json_lite and base64 round trips", "[server][etcd]") {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\0\xff\x10 binary", 10)}) {
    auto back = json::base64_decode(json::base64_encode(s));
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
  CHECK(json::base64_encode("hello") == "aGVsbG8=");
  CHECK_FALSE(json::base64_decode("a=bc").has_value());
  CHECK_FALSE(json::base64_decode("abc").has_value());
  auto doc = json::parse(R"( {"a":"x\u00e9\ud83d\ude00","n":"-12","b":true,"l":[1,{"k":null}],"e":{}} )");
  REQUIRE(doc.has_value());
  CHECK(doc->find("a")->text == "x\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(json::find_int64(*doc, "n") == -12);
  CHECK(doc->find("b")->boolean);
  CHECK(doc->find("l")->items.size() == 2);
  CHECK(doc->find("missing") == nullptr);
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\\q\"", "nul"}) {
    INFO(bad);
    CHECK_FALSE(json::parse(bad).has_value());
  }
  CHECK_FALSE(json::parse(std::string(100, '[') + std::string(100, ']')).has_value());  // depth cap

  // Found by tests/fuzz/fuzz_json. Numbers follow RFC 8259's grammar (any run of digits, '.',
  // 'e', '+' and '-' was a number, so "+" and "1.2.3" parsed).
  for (const char* bad :
       {"+", "+1", "-", "--1", "01", "-01", "1.", ".5", "1e", "1e+", "1.2.3", "1-2", "0x1"}) {
    INFO(bad);
    CHECK_FALSE(json::parse(bad).has_value());
  }
  for (const char* good : {"0", "-0", "10", "0.5", "-1.25e-3", "1E+2", "2e10"}) {
    INFO(good);
    REQUIRE(json::parse(good).has_value());
    CHECK(json::parse(good)->text == good);
  }
  // An escaped low surrogate without its high one is refused, like a lone high one (it was
  // decoded into bytes that are not UTF-8).
  CHECK_FALSE(json::parse(R"("\udc00")").has_value());
  CHECK_FALSE(json::parse(R"("\ud800")").has_value());
  // find_int64 takes every int64 (it refused the ten nearest each end, INT64_MAX included).
  auto ends = json::parse(
      R"({"max":"9223372036854775807","min":"-9223372036854775808","over":"9223372036854775808",)"
      R"("under":-9223372036854775809,"n":9223372036854775799,"plus":"+1","empty":"","minus":"-"})");
  REQUIRE(ends.has_value());
  CHECK(json::find_int64(*ends, "max") == std::numeric_limits<std::int64_t>::max());
  CHECK(json::find_int64(*ends, "min") == std::numeric_limits<std::int64_t>::min());
  CHECK(json::find_int64(*ends, "n") == 9223372036854775799);
  for (const char* refused : {"over", "under", "plus", "empty", "minus"}) {
    INFO(refused);
    CHECK_FALSE(json::find_int64(*ends, refused).has_value());
  }
}

TEST_CASE("etcd: 4 writer processes at once lose nothing", "[server][etcd][process][concurrency]") {
  et::store s(url());
  const std::string key = nc_test::unique_name("nc/procs");
  REQUIRE(s.create_if_absent(key, "0").ok());
  std::vector<std::unique_ptr<nc_test::writer_process>> ws;
  for (int i = 0; i < 4; ++i) {
    ws.push_back(std::make_unique<nc_test::writer_process>(
        std::vector<std::string>{"etcd", "-", key, "100", "gated"}));
  }
  nc_test::start_together(ws);
  for (auto& w : ws) CHECK(w->wait() == 0);
  CHECK(s.read(key).value == "400");
}

TEST_CASE("etcd: a writer killed between read and write loses nothing and blocks no one",
          "[server][etcd][process][concurrency]") {
  et::store s(url());
  const std::string key = nc_test::unique_name("nc/killed");
  REQUIRE(s.create_if_absent(key, "0").ok());
  nc_test::writer_process victim({"etcd", "-", key, "1", "hold"});
  REQUIRE(victim.wait_for_line("READ"));
  victim.kill_now();
  std::vector<std::unique_ptr<nc_test::writer_process>> ws;
  for (int i = 0; i < 4; ++i) {
    ws.push_back(
        std::make_unique<nc_test::writer_process>(std::vector<std::string>{"etcd", "-", key, "50", "run"}));
  }
  for (auto& w : ws) CHECK(w->wait() == 0);
  CHECK(s.read(key).value == "200");
}
