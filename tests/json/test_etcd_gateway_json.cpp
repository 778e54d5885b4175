// The etcd adapter's gateway JSON, decoded by nlohmann/json without a server: what is refused
// stays refused — non-JSON (RFC 8259's number grammar, lone surrogates), a kv `value` that is not
// a base64 string, bad base64, and int64 fields outside int64's range or not integers at all —
// and txn answers map onto the right outcome. (The hand-written parser these replace refused the
// same inputs; tests/fuzz found the cases in the lists below.)
#include <noclobber/adapters/etcd.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace gw = noclobber::detail::etcd;
using noclobber::read_status;
using noclobber::write_status;
using rr = noclobber::read_result<std::string, std::int64_t>;

namespace {
gw::json doc(const std::string& text) {
  auto d = gw::parse_answer(text);
  REQUIRE(d.has_value());
  return *d;
}
}  // namespace

TEST_CASE("etcd gateway JSON: base64 both ways, strict", "[etcd][json]") {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\0\xff\x10 binary", 10)}) {
    auto back = noclobber::detail::base64_decode(noclobber::detail::base64_encode(s));
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
  CHECK(noclobber::detail::base64_encode("hello") == "aGVsbG8=");
  for (const char* bad : {"a=bc", "abc", "ab=c", "====", "a===", "ab-_", "YQ==YQ==", "Y Q=="}) {
    INFO(bad);
    CHECK_FALSE(noclobber::detail::base64_decode(bad).has_value());
  }
}

TEST_CASE("etcd gateway JSON: only RFC 8259 JSON is an answer", "[etcd][json]") {
  auto d = doc(R"( {"a":"x\u00e9\ud83d\ude00","n":"-12","b":true,"l":[1,{"k":null}],"e":{}} )");
  CHECK(d["a"] == "x\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(gw::int64_member(d, "n") == -12);
  for (const char* bad : {"",    "{",     "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\\q\"",     "nul",     "+",
                          "+1",  "-",     "--1",      "01",   "-01",         "1.",          ".5",      "1e",
                          "1e+", "1.2.3", "1-2",      "0x1",  R"("\udc00")", R"("\ud800")", "\"\xff\""}) {
    INFO(bad);
    CHECK_FALSE(gw::parse_answer(bad).has_value());
  }
  for (const char* good : {"0", "-0", "10", "0.5", "-1.25e-3", "1E+2", "2e10"}) {
    INFO(good);
    CHECK(gw::parse_answer(good).has_value());
  }
  // Found by tests/fuzz/fuzz_json: nlohmann/json stops at a NUL byte as at the end of input, so
  // an answer with anything after a NUL parsed as the part before it.
  using namespace std::string_view_literals;
  for (const std::string_view bad : {"{}\0x"sv, "{\"kvs\":[]}\0"sv, "\0"sv, "\"a\0\""sv}) {
    INFO(bad.size());
    CHECK_FALSE(gw::parse_answer(bad).has_value());
  }
}

TEST_CASE("etcd gateway JSON: int64 fields take every int64 and nothing else", "[etcd][json]") {
  const auto d = doc(
      R"({"max":"9223372036854775807","min":"-9223372036854775808","over":"9223372036854775808",)"
      R"("under":-9223372036854775809,"n":9223372036854775799,"nmax":9223372036854775807,)"
      R"("nover":9223372036854775808,"neg":-5,"zeros":"007","plus":"+1","empty":"","minus":"-",)"
      R"("frac":"1.5","nfrac":1.5,"exp":1e3,"bool":true,"null":null,"obj":{},"space":" 1","hex":"0x10"})");
  CHECK(gw::int64_member(d, "max") == std::numeric_limits<std::int64_t>::max());
  CHECK(gw::int64_member(d, "min") == std::numeric_limits<std::int64_t>::min());
  CHECK(gw::int64_member(d, "n") == 9223372036854775799);
  CHECK(gw::int64_member(d, "nmax") == std::numeric_limits<std::int64_t>::max());
  CHECK(gw::int64_member(d, "neg") == -5);
  CHECK(gw::int64_member(d, "zeros") == 7);
  for (const char* refused : {"over", "under", "nover", "plus", "empty", "minus", "frac", "nfrac", "exp",
                              "bool", "null", "obj", "space", "hex", "missing"}) {
    INFO(refused);
    CHECK_FALSE(gw::int64_member(d, refused).has_value());
  }
  CHECK_FALSE(gw::int64_member(doc("[1]"), "0").has_value());  // not an object
}

TEST_CASE("etcd gateway JSON: a range answer", "[etcd][json]") {
  auto read = [](const std::string& text) { return gw::range_answer<rr>(doc(text)); };
  auto r = read(R"({"kvs":[{"mod_revision":"7","value":"aGVsbG8="}]})");
  REQUIRE(r.found());
  CHECK(r.value == "hello");
  CHECK(r.token == 7);
  r = read(R"({"kvs":[{"mod_revision":"7"}]})");  // the gateway omits an empty value
  REQUIRE(r.found());
  CHECK(r.value.empty());
  for (const char* absent : {R"({})", R"({"kvs":[]})", R"({"kvs":{}})", R"({"count":"0"})", "[]"}) {
    INFO(absent);
    CHECK(read(absent).status == read_status::absent);
  }
  // A value that is not a base64 string ("value": null read as empty once), bad base64, a
  // revision that is no int64: malformed, never a value or revision 0.
  for (const char* kv :
       {R"({"mod_revision":"7","value":null})", R"({"mod_revision":"7","value":5})",
        R"({"mod_revision":"7","value":{}})", R"({"mod_revision":"7","value":[]})",
        R"({"mod_revision":"7","value":true})", R"({"mod_revision":"7","value":"a=bc"})",
        R"({"mod_revision":"7","value":"abc"})", R"({"value":"aGk="})",
        R"({"mod_revision":"9223372036854775808","value":"aGk="})", R"({"mod_revision":"x","value":"aGk="})",
        R"({"mod_revision":7.5,"value":"aGk="})", "5", "null"}) {
    INFO(kv);
    const auto bad = read(std::string(R"({"kvs":[)") + kv + "]}");
    CHECK(bad.status == read_status::permanent);
    CHECK(bad.error.message == "malformed kv in etcd answer");
  }
}

TEST_CASE("etcd gateway JSON: a txn answer", "[etcd][json]") {
  auto txn = [](const std::string& text, write_status on_failed, bool is_put) {
    return gw::txn_answer(doc(text), on_failed, is_put);
  };
  auto w = txn(R"({"header":{"revision":"42"},"succeeded":true})", write_status::conflict, true);
  CHECK(w.status == write_status::applied);
  CHECK(w.token == 42);
  w = txn(R"({"header":{"revision":"99999999999999999999"},"succeeded":true})", write_status::conflict, true);
  CHECK(w.status == write_status::applied);
  CHECK_FALSE(w.token.has_value());  // applied; the next read gets a usable token
  CHECK(txn(R"({"succeeded":true})", write_status::conflict, false).status == write_status::applied);
  CHECK(txn(R"({"header":{}})", write_status::exists, true).status == write_status::exists);
  const char* moved = R"({"responses":[{"response_range":{"kvs":[{"mod_revision":"3"}],"count":"1"}}]})";
  const char* gone = R"({"responses":[{"response_range":{}}]})";
  CHECK(txn(moved, write_status::conflict, true).status == write_status::conflict);
  CHECK(txn(gone, write_status::conflict, true).status == write_status::absent);
  // "succeeded" must be the boolean true; anything else is a failed compare.
  CHECK(txn(R"({"succeeded":"true","responses":[{"response_range":{}}]})", write_status::conflict, true)
            .status == write_status::absent);
  for (const char* bad :
       {R"({})", R"({"responses":[]})", R"({"responses":[5]})", R"({"responses":{}})", "[]"}) {
    INFO(bad);
    CHECK(txn(bad, write_status::conflict, true).status == write_status::permanent);
  }
}
