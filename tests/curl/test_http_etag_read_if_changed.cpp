// The HTTP ETag adapter's conditional GET (read_if_changed: If-None-Match -> 304), which lets
// cached_store serve a current copy without downloading it again.
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/cached_store.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "fake_s3_server.hpp"

using nc_s3_test::action;
using nc_s3_test::request;

TEST_CASE("http_etag read_if_changed: 304 is unchanged, anything else a fresh read", "[http_etag]") {
  std::atomic<int> version{1};
  nc_s3_test::fake_s3_server server([&](const request& r, std::size_t) {
    const std::string etag = "\"v" + std::to_string(version.load()) + "\"";
    if (r.header("if-none-match") == etag)
      return action{action::answer, 304, "Not Modified", {"ETag: " + etag}, ""};
    return action{action::answer, 200, "OK", {"ETag: " + etag}, "body " + std::to_string(version.load())};
  });
  noclobber::http_etag::store s(server.endpoint() + "/dav/");
  auto first = s.read("doc");
  REQUIRE(first.found());
  CHECK(s.read_if_changed("doc", first.token).unchanged);
  CHECK(server.requests().back().header("if-none-match") == "\"v1\"");
  version = 2;
  auto changed = s.read_if_changed("doc", first.token);
  REQUIRE_FALSE(changed.unchanged);
  CHECK(changed.fresh.value == "body 2");
  CHECK(changed.fresh.token == "\"v2\"");
  CHECK_THROWS_AS(s.read_if_changed("doc", "unquoted"), std::invalid_argument);

  noclobber::store_cache<std::string, std::string, std::string> cache;
  noclobber::cached_store<noclobber::http_etag::store> view(s, cache);
  REQUIRE(view.read("doc").found());
  CHECK(view.read("doc").value == "body 2");
  CHECK(cache.stats().revalidated == 1);
}
