// libcurl's silent re-send (noclobber/adapters/detail/curl_easy.hpp): a write whose connection
// dies after the server read it — and may have applied it — must come back `indeterminate`, must
// reach the server once, and read_modify_write must then resolve it by re-reading instead of
// applying the update a second time. A loopback fake server reads each write whole and then
// resets the connection; with the port left open libcurl's re-send would reach it again (a second
// copy), with the port closed for a moment the re-send "couldn't connect" (the killed etcd member
// of the original report). Every adapter built on curl_easy is driven: http_etag, webdav_lock,
// etcd. Built twice: with CURLOPT_PREREQFUNCTION and with the fallback for libcurl < 7.80
// (NOCLOBBER_CURL_NO_PREREQ).
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/webdav_lock.hpp>
#include <noclobber/read_modify_write.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <string>

#include "faults/fake_http_server.hpp"

using nc_faults::http_answer;
using nc_faults::http_request;
using noclobber::write_status;

namespace {

constexpr int iterations = 20;

bool is_write(const http_request& r) {
  return !(r.method == "GET" || r.method == "HEAD" || r.path == "/v3/kv/range");
}

// Answers reads (a resource "v" at ETag "1"; an etcd range with one kv at revision 7) and resets
// every write after reading it whole. A write follows a read, so libcurl sends it on the reused
// keep-alive connection (the case it re-sends), unless it opens a fresh one for writes.
http_answer reads_answered_writes_reset(const http_request& r) {
  if (r.path == "/v3/kv/range") {
    return {
        false, "200 OK", "Content-Type: application/json\r\n",
        R"({"header":{"revision":"7"},"kvs":[{"key":"aw==","mod_revision":"7","value":"dg=="}],"count":"1"})"};
  }
  if (!is_write(r)) return {false, "200 OK", "ETag: \"1\"\r\n", "v"};
  return http_answer::reset_connection();
}

int writes_received(const nc_faults::fake_http_server& server) {
  int n = 0;
  for (const http_request& r : server.requests()) n += is_write(r) ? 1 : 0;
  return n;
}

// One adapter: `iterations` times a read (which makes the connection a reused one) and a write
// that the server reads whole and answers with a reset. Every write: indeterminate, one copy.
template <class Store, class Write>
void each_write_indeterminate_and_sent_once(Store& s, const nc_faults::fake_http_server& server,
                                            const std::string& key, Write write) {
  for (int i = 0; i < iterations; ++i) {
    server.wait_listening();  // it may refuse connections for a moment after the last reset
    REQUIRE(s.read(key).found());
    const int before = writes_received(server);
    const auto w = write(s);
    INFO("iteration " << i << ": " << noclobber::to_string(w.status) << " [" << w.error.code << "] "
                      << w.error.message);
    CHECK(w.status == write_status::indeterminate);
    CHECK(writes_received(server) == before + 1);  // never a second copy
  }
}

}  // namespace

TEST_CASE("curl adapters: a write reset after the server read it is indeterminate, never re-sent",
          "[curl][resend][concurrency]") {
  nc_faults::fake_http_server server(reads_answered_writes_reset);
  const bool port_closed_after_reset = GENERATE(false, true);
  CAPTURE(port_closed_after_reset);
  const auto refuse = std::chrono::milliseconds(port_closed_after_reset ? 30 : 0);

  SECTION("http_etag") {
    noclobber::http_etag::store s(server.url());
    each_write_indeterminate_and_sent_once(s, server, "k", [&](auto& st) {
      server.refuse_after_reset(refuse);
      return st.write_if_match("k", "\"1\"", "w");
    });
    each_write_indeterminate_and_sent_once(s, server, "k", [&](auto& st) {
      server.refuse_after_reset(refuse);
      return st.erase_if_match("k", "\"1\"");
    });
  }
  SECTION("webdav_lock") {
    noclobber::webdav_lock::store s(server.url());
    each_write_indeterminate_and_sent_once(s, server, "k", [&](auto& st) {
      server.refuse_after_reset(refuse);
      return st.write_if_match("k", "\"1\"", "w");
    });
  }
  SECTION("etcd") {
    noclobber::etcd::store s(server.endpoint());
    each_write_indeterminate_and_sent_once(s, server, "k", [&](auto& st) {
      server.refuse_after_reset(refuse);
      return st.write_if_match("k", 7, "w");
    });
  }
}

TEST_CASE("curl adapters: a read whose connection dies is re-sent by libcurl and answered",
          "[curl][resend][concurrency]") {
  // GET is safe to send twice: libcurl's re-send stays on for it.
  int resets_left = iterations;
  nc_faults::fake_http_server server([&](const http_request& r) {
    if (r.method == "GET" && r.index_on_connection > 0 && resets_left > 0) {
      --resets_left;
      return http_answer::reset_connection();
    }
    return http_answer{false, "200 OK", "ETag: \"1\"\r\n", "v"};
  });
  noclobber::http_etag::store s(server.url());
  REQUIRE(s.read("k").found());
  for (int i = 0; i < iterations; ++i) CHECK(s.read("k").found());
}

TEST_CASE("curl adapters: a refused connection before anything was sent stays transient",
          "[curl][resend][concurrency]") {
  int port = 0;
  {
    nc_faults::fake_http_server gone(reads_answered_writes_reset);
    port = gone.port();
  }
  noclobber::http_etag::store s("http://127.0.0.1:" + std::to_string(port) + "/");
  const auto w = s.write_if_match("k", "\"1\"", "w");
  CHECK(w.status == write_status::transient);
  noclobber::etcd::store e("http://127.0.0.1:" + std::to_string(port));
  CHECK(e.write_if_match("k", 7, "w").status == write_status::transient);
}

namespace {

// A key-value resource server with strong ETags (a version counter). It applies every
// conditional PUT that matches, and resets the connection instead of answering while
// `resets_left` > 0.
class kv_server {
 public:
  explicit kv_server(int resets)
      : resets_left_(resets), server_([this](const http_request& r) { return on(r); }) {}

  [[nodiscard]] std::string url() const { return server_.url(); }
  void refuse_after_reset(std::chrono::milliseconds d) { server_.refuse_after_reset(d); }
  [[nodiscard]] std::string value(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    return data_[path].second;
  }
  [[nodiscard]] int applied() {
    std::lock_guard<std::mutex> g(mu_);
    return applied_;
  }
  [[nodiscard]] int resets_left() {
    std::lock_guard<std::mutex> g(mu_);
    return resets_left_;
  }

 private:
  http_answer on(const http_request& r) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = data_.find(r.path);
    const bool exists = it != data_.end();
    const std::string etag = exists ? "\"" + std::to_string(it->second.first) + "\"" : "";
    if (r.method == "GET" || r.method == "HEAD") {
      if (!exists) return {false, "404 Not Found", "", ""};
      return {false, "200 OK", "ETag: " + etag + "\r\n", it->second.second};
    }
    if (r.method != "PUT") return {false, "405 Method Not Allowed", "", ""};
    const bool match = r.header("If-None-Match") == "*" ? !exists : (exists && r.header("If-Match") == etag);
    if (!match) return {false, "412 Precondition Failed", "", ""};
    auto& slot = data_[r.path];
    slot.first += 1;
    slot.second = r.body;
    ++applied_;
    if (resets_left_ > 0) {
      --resets_left_;
      return http_answer::reset_connection();  // applied, and the client hears nothing
    }
    return {false, "204 No Content", "ETag: \"" + std::to_string(slot.first) + "\"\r\n", ""};
  }

  std::mutex mu_;
  std::map<std::string, std::pair<long, std::string>> data_;  // path -> (version, body)
  int applied_ = 0;
  int resets_left_;
  nc_faults::fake_http_server server_;  // last: its thread stops before the state above goes
};

int count_of(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (std::size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("read_modify_write over curl: a write applied then reset is resolved by re-reading, applied once",
          "[curl][resend][rmw][concurrency]") {
  const bool port_closed_after_reset = GENERATE(false, true);
  CAPTURE(port_closed_after_reset);
  kv_server server(iterations);
  noclobber::http_etag::store s(server.url());
  noclobber::retry_policy policy;
  // The port reopens 30 ms after the reset, in the server's thread, which a loaded machine may run
  // late: the attempts cover seconds of backoff (20 ms each at most), not the 30 ms.
  policy.max_attempts = 1000;
  policy.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::milliseconds(1), std::chrono::milliseconds(20));

  for (int i = 0; i < iterations; ++i) {
    if (port_closed_after_reset) server.refuse_after_reset(std::chrono::milliseconds(30));
    const std::string id = "[u" + std::to_string(i) + "]";
    const auto r = noclobber::read_modify_write(
        s, "list", [&](const std::optional<std::string>& cur) { return cur.value_or("") + id; }, policy);
    INFO("update " << i << ": " << noclobber::to_string(r.outcome) << " "
                   << noclobber::to_string(r.last_status) << " " << r.last_error.message);
    CHECK(r.outcome == noclobber::rmw_outcome::applied);
  }
  const std::string final_value = server.value("/list");
  CHECK(server.resets_left() == 0);  // every update's first write was applied and then reset
  for (int i = 0; i < iterations; ++i) {
    INFO("final value " << final_value);
    CHECK(count_of(final_value, "[u" + std::to_string(i) + "]") == 1);
  }
  CHECK(server.applied() == iterations);  // one store per update: none applied twice
}
