// typed_store: a typed view over a byte store through a codec. Round trips, every codec failure
// is a permanent outcome that writes nothing (a corrupt record is reported, never replaced), the
// optional capabilities are forwarded only when the inner store has them, and the race harness
// runs on the view (16 forced writers: naive loses 15, read_modify_write loses none).
#include <noclobber/codec.hpp>
#include <noclobber/memory_store.hpp>
#include <noclobber/naive_read_modify_write.hpp>
#include <noclobber/patch_if_unchanged.hpp>
#include <noclobber/race_harness.hpp>
#include <noclobber/race_harness/field_workload.hpp>
#include <noclobber/read_modify_write.hpp>
#include <noclobber/typed_store.hpp>

#include <catch2/catch.hpp>

#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace nc = noclobber;

namespace {

struct point {
  std::int64_t x = 0;
  std::int64_t y = 0;
  std::string note;
  friend bool operator==(const point&, const point&) = default;
};

// "x,y,note": a hand-written codec that checks everything it reads.
struct point_codec {
  std::string encode(const point& p) const {
    if (p.note.find(',') != std::string::npos) throw nc::codec_error("point: a note must not contain ','");
    return std::to_string(p.x) + "," + std::to_string(p.y) + "," + p.note;
  }
  point decode(const std::string& s) const {
    point p;
    const char* end = s.data() + s.size();
    auto [a, ea] = std::from_chars(s.data(), end, p.x);
    if (ea != std::errc{} || a == end || *a != ',')
      throw nc::codec_error("point: expected 'x,y,note', got '" + s + "'");
    auto [b, eb] = std::from_chars(a + 1, end, p.y);
    if (eb != std::errc{} || b == end || *b != ',')
      throw nc::codec_error("point: expected 'x,y,note', got '" + s + "'");
    p.note.assign(b + 1, end);
    return p;
  }
};
static_assert(nc::codec<point_codec, point>);
static_assert(!nc::codec<point_codec, int>);

// A codec that throws something that is not a std::exception.
struct odd_codec {
  std::string encode(const point&) const { throw 42; }
  point decode(const std::string&) const { throw 42; }
};

using bytes_store = nc::memory_store<std::string, std::string>;
using typed_points = nc::typed_store<bytes_store&, point, point_codec>;

// A store with only the core contract (no erase, patch or overwrite).
struct core_only {
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::uint64_t;
  bytes_store inner;
  nc::read_result<std::string, std::uint64_t> read(const std::string& k) { return inner.read(k); }
  nc::write_result<std::uint64_t> write_if_match(const std::string& k, const std::uint64_t& t,
                                                 const std::string& v) {
    return inner.write_if_match(k, t, v);
  }
  nc::write_result<std::uint64_t> create_if_absent(const std::string& k, const std::string& v) {
    return inner.create_if_absent(k, v);
  }
};

// A movable store (memory_store holds mutexes): a handle on a shared memory_store.
struct handle_store {
  using key_type = std::string;
  using value_type = std::string;
  using token_type = std::uint64_t;
  std::shared_ptr<bytes_store> inner = std::make_shared<bytes_store>();
  nc::read_result<std::string, std::uint64_t> read(const std::string& k) { return inner->read(k); }
  nc::write_result<std::uint64_t> write_if_match(const std::string& k, const std::uint64_t& t,
                                                 const std::string& v) {
    return inner->write_if_match(k, t, v);
  }
  nc::write_result<std::uint64_t> create_if_absent(const std::string& k, const std::string& v) {
    return inner->create_if_absent(k, v);
  }
};

}  // namespace

static_assert(nc::conditional_writer<typed_points>);
static_assert(nc::erasable_writer<typed_points>);
static_assert(nc::patchable_writer<typed_points>);
static_assert(nc::overwritable_store<typed_points>);
static_assert(std::is_same_v<nc::store_patch_t<typed_points>, nc::store_patch_t<bytes_store>>);
static_assert(nc::conditional_writer<nc::typed_store<core_only, point, point_codec>>);
static_assert(!nc::erasable_writer<nc::typed_store<core_only, point, point_codec>>);
static_assert(!nc::patchable_writer<nc::typed_store<core_only, point, point_codec>>);
static_assert(!nc::overwritable_store<nc::typed_store<core_only, point, point_codec>>);

TEST_CASE("typed_store: read_modify_write on typed values, stored encoded", "[typed_store]") {
  bytes_store bytes;
  auto points = nc::typed<point>(bytes, point_codec{});
  static_assert(std::is_same_v<decltype(points), typed_points>);
  auto r = nc::read_modify_write(points, "p", [](const std::optional<point>& cur) -> nc::update<point> {
    point p = cur.value_or(point{});
    p.x += 1;
    p.note = "made";
    return p;
  });
  REQUIRE(r.outcome == nc::rmw_outcome::applied);
  CHECK(r.created);
  CHECK(bytes.read("p").value == "1,0,made");
  r = nc::read_modify_write(points, "p", [](const std::optional<point>& cur) -> nc::update<point> {
    point p = *cur;
    p.y = -7;
    return p;
  });
  REQUIRE(r.ok());
  CHECK_FALSE(r.created);
  CHECK(bytes.read("p").value == "1,-7,made");
  CHECK(points.read("p").value == point{1, -7, "made"});
  CHECK(points.read("missing").absent());

  // An owning view: the store is moved in.
  handle_store handle;
  auto owned = nc::typed<point>(handle_store{handle}, point_codec{});
  static_assert(std::is_same_v<decltype(owned), nc::typed_store<handle_store, point, point_codec>>);
  REQUIRE(owned.create_if_absent("q", point{2, 3, "o"}).ok());
  CHECK(handle.read("q").value == "2,3,o");
}

TEST_CASE("typed_store: a corrupt stored value is a permanent read; nothing is written", "[typed_store]") {
  bytes_store bytes;
  auto points = nc::typed<point>(bytes, point_codec{});
  REQUIRE(bytes.create_if_absent("p", "not a point").ok());
  const auto before = bytes.read("p");

  const auto read = points.read("p");
  CHECK(read.status == nc::read_status::permanent);
  CHECK(read.error.code == nc::codec_error_code);
  CHECK(read.error.message == "key 'p': point: expected 'x,y,note', got 'not a point'");

  int calls = 0;
  auto r = nc::read_modify_write(points, "p", [&](const std::optional<point>&) -> nc::update<point> {
    ++calls;
    return point{};
  });
  CHECK(r.outcome == nc::rmw_outcome::gave_up);
  CHECK(r.last_status == nc::write_status::permanent);
  CHECK(r.last_error.code == "codec");
  CHECK(calls == 0);
  const auto after = bytes.read("p");
  CHECK(after.value == "not a point");  // never replaced by a default
  CHECK(after.token == before.token);
}

TEST_CASE("typed_store: a value the codec cannot encode is a permanent write; nothing is sent",
          "[typed_store]") {
  bytes_store bytes;
  auto points = nc::typed<point>(bytes, point_codec{});
  REQUIRE(points.create_if_absent("p", point{1, 2, "ok"}).ok());
  const auto tok = points.read("p").token;
  const point bad{1, 2, "a,b"};
  for (auto w : {points.write_if_match("p", tok, bad), points.create_if_absent("new", bad),
                 points.overwrite("p", bad)}) {
    CHECK(w.status == nc::write_status::permanent);
    CHECK(w.error.code == "codec");
    CHECK(w.error.message.ends_with("': point: a note must not contain ','"));
  }
  CHECK(bytes.read("p").value == "1,2,ok");
  CHECK(bytes.read("p").token == tok);
  CHECK(bytes.read("new").absent());

  auto r = nc::read_modify_write(points, "p",
                                 [&](const std::optional<point>&) -> nc::update<point> { return bad; });
  CHECK(r.outcome == nc::rmw_outcome::gave_up);
  CHECK(r.last_status == nc::write_status::permanent);
  CHECK(r.attempts == 1);
}

TEST_CASE("typed_store: a codec that throws a non-std exception is reported, not propagated",
          "[typed_store]") {
  bytes_store bytes;
  REQUIRE(bytes.create_if_absent("p", "1,2,x").ok());
  auto odd = nc::typed<point>(bytes, odd_codec{});
  const auto read = odd.read("p");
  CHECK(read.status == nc::read_status::permanent);
  CHECK(read.error.message == "key 'p': the codec threw an exception that is not a std::exception");
  const auto w = odd.create_if_absent("q", point{});
  CHECK(w.status == nc::write_status::permanent);
  CHECK(bytes.read("q").absent());
}

TEST_CASE("typed_store: erase and patch are forwarded to the inner store", "[typed_store]") {
  bytes_store bytes;
  auto points = nc::typed<point>(bytes, point_codec{});
  REQUIRE(points.create_if_absent("p", point{1, 2, "n"}).ok());
  auto tok = points.read("p").token;

  // The inner store's own patch_type (a callable on the stored bytes).
  const auto p = points.patch_if_match("p", tok, [](std::string& s) { s += "!"; });
  REQUIRE(p.ok());
  CHECK(points.read("p").value.note == "n!");

  // A typed patch callable goes through patch_if_unchanged's emulated path.
  tok = points.read("p").token;
  const auto typed_patch = nc::patch_if_unchanged(points, "p", tok, [](point& q) { q.x = 40; });
  REQUIRE(typed_patch.ok());
  CHECK(points.read("p").value == point{40, 2, "n!"});

  CHECK(points.erase_if_match("p", tok).status == nc::write_status::conflict);
  CHECK(points.erase_if_match("p", points.read("p").token).ok());
  CHECK(bytes.read("p").absent());
}

TEST_CASE("typed_store: the race harness on typed values (16 forced writers)", "[typed_store][race]") {
  bytes_store bytes;
  auto points = nc::typed<point>(bytes, point_codec{});
  using options_t = nc::race_options_for<typed_points>;
  auto opts = [](const char* strategy, unsigned ops) {
    options_t o;
    o.writers = 16;
    o.ops_per_writer = ops;
    o.mode = nc::race_mode::forced;
    o.keys = {std::string("point/") + strategy};
    o.strategy_name = strategy;
    // The tag travels in `note`; x counts the writes that survived.
    o.workload = nc::field_workload<point>(
        &point::note, [](point& p, const nc::write_tag&) { ++p.x; }, 4);
    return o;
  };
  const auto naive = nc::run_race(points, nc::naive_strategy{}, opts("naive", 1));
  INFO(naive.to_text());
  CHECK(naive.op_errors == 0);
  CHECK(naive.lost() == 15);
  CHECK(points.read("point/naive").value.x < 16);

  const auto cas = nc::run_race(points, nc::cas_strategy{}, opts("cas", 20));
  INFO(cas.to_text());
  CHECK(cas.op_errors == 0);
  CHECK(cas.lost() == 0);
  CHECK(cas.check.ok());
  CHECK(cas.check.applied == 16 * 20);
  CHECK(points.read("point/cas").value.x == 16 * 20);
}
