// Redis adapter against a real server (NOCLOBBER_REDIS_ADDR): every outcome category for both
// write methods, WATCH never outliving a call (pooled connections), timeouts classified, four
// writer processes, a writer killed between its read and its write, and writer processes
// SIGKILLed inside write_if_match (after WATCH, with MULTI + SET queued, before and halfway
// through EVALSHA) while others keep writing.
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "canned_redis.hpp"
#include "redis_raw.hpp"
#include "server_env.hpp"

namespace rd = noclobber::redis;
using noclobber::write_status;

namespace {

using nc_test::raw;

std::string addr() {
  return nc_test::redis_addr();
}

// True when a MULTI/EXEC on `c` runs although `key` was changed by another client just before:
// i.e. no WATCH is armed on `c`.
bool no_watch_armed(redisContext* c, redisContext* other, const std::string& key) {
  raw(other, {"SET", key + ":probe", "changed"});
  raw(other, {"SET", key, std::string(32, '0') + "changed by other"});
  raw(c, {"MULTI"});
  raw(c, {"SET", key + ":probe", "mine"});
  auto exec = raw(c, {"EXEC"});
  return exec->type == REDIS_REPLY_ARRAY;
}

// The CLIENT LIST entry of the connection named `name`, or "" when the server holds none.
std::string client_entry(redisContext* c, const std::string& name) {
  auto r = raw(c, {"CLIENT", "LIST"});
  REQUIRE(r->type == REDIS_REPLY_STRING);
  std::istringstream all(std::string(r->str, static_cast<std::size_t>(r->len)));
  for (std::string line; std::getline(all, line);) {
    if (line.find(" name=" + name + " ") != std::string::npos) return line;
  }
  return "";
}

// The value of `field=` in a CLIENT LIST entry.
std::string client_field(const std::string& entry, const std::string& field) {
  const auto at = entry.find(" " + field + "=");
  if (at == std::string::npos) return "<no " + field + ">";
  const auto from = at + field.size() + 2;
  return entry.substr(from, entry.find(' ', from) - from);
}

// Polls `pred` every 5 ms for up to `limit`; its last answer.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace

TEST_CASE("redis store: every outcome category, both write methods", "[server][redis]") {
  for (auto m : {rd::method::watch_multi_exec, rd::method::lua_compare_and_set}) {
    INFO("method " << static_cast<int>(m));
    rd::store s(addr(), m);
    const std::string key = nc_test::unique_name("nc:contract");

    CHECK(s.read(key).status == noclobber::read_status::absent);
    auto c1 = s.create_if_absent(key, std::string("v1\0x", 4));
    REQUIRE(c1.status == write_status::applied);
    REQUIRE(c1.token.has_value());
    CHECK(s.create_if_absent(key, "other").status == write_status::exists);

    auto r1 = s.read(key);
    REQUIRE(r1.found());
    CHECK(r1.value == std::string("v1\0x", 4));
    CHECK(r1.token == *c1.token);

    auto w2 = s.write_if_match(key, r1.token, "v2");
    REQUIRE(w2.status == write_status::applied);
    CHECK(*w2.token != r1.token);
    CHECK(s.read(key).token == *w2.token);
    CHECK(s.write_if_match(key, r1.token, "lost").status == write_status::conflict);
    CHECK(s.read(key).value == "v2");

    CHECK(s.write_if_match(key + ":missing", r1.token, "x").status == write_status::absent);
    CHECK(s.erase_if_match(key, r1.token).status == write_status::conflict);
    CHECK(s.erase_if_match(key, *w2.token).status == write_status::applied);
    CHECK(s.read(key).status == noclobber::read_status::absent);
    CHECK(s.erase_if_match(key, *w2.token).status == write_status::absent);

    auto c3 = s.create_if_absent(key, "v1");  // re-created: a new stamp, never an old one
    REQUIRE(c3.ok());
    CHECK(*c3.token != *c1.token);
    CHECK(*c3.token != *w2.token);
    CHECK(s.overwrite(key, "blind").ok());
    CHECK(s.read(key).value == "blind");

    // permanent: a key of another type (WRONGTYPE), and a value noclobber did not write.
    raw(s.native_handle(), {"DEL", key});
    raw(s.native_handle(), {"LPUSH", key, "x"});
    CHECK(s.read(key).status == noclobber::read_status::permanent);
    CHECK(s.write_if_match(key, *c3.token, "x").status == write_status::permanent);
    raw(s.native_handle(), {"DEL", key});
    raw(s.native_handle(), {"SET", key, "plain"});
    auto foreign = s.read(key);
    CHECK(foreign.status == noclobber::read_status::permanent);
    CHECK(foreign.error.message.find("version stamp") != std::string::npos);
    raw(s.native_handle(), {"DEL", key});
  }
}

TEST_CASE("redis: no WATCH outlives a call, so stores can be pooled", "[server][redis]") {
  rd::store s(addr());
  rd::store other(addr());
  const std::string key = nc_test::unique_name("nc:watch");

  // The hazard, shown with raw commands: a WATCH left armed makes a later EXEC fail.
  raw(s.native_handle(), {"WATCH", key});
  CHECK_FALSE(no_watch_armed(s.native_handle(), other.native_handle(), key));

  raw(s.native_handle(), {"DEL", key});
  REQUIRE(s.create_if_absent(key, "v").ok());
  const auto tok = s.read(key).token;
  // After each way out of write_if_match / erase_if_match, nothing is armed.
  CHECK(s.write_if_match(key, std::string(32, 'f'), "x").status == write_status::conflict);  // GET mismatch
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  CHECK(s.write_if_match(key + ":gone", tok, "x").status == write_status::absent);  // GET nil
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  raw(other.native_handle(), {"SET", key, tok + "v"});
  CHECK(s.write_if_match(key, tok, "y").ok());  // EXEC ran
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  raw(other.native_handle(), {"SET", key, tok + "v"});
  CHECK(s.erase_if_match(key, tok).ok());
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  raw(s.native_handle(), {"DEL", key, key + ":probe"});
}

TEST_CASE("redis: a pool of 4 stores shared by 16 threads loses no increment",
          "[server][redis][concurrency]") {
  rd::store_pool pool(addr(), 4);
  const std::string key = nc_test::unique_name("nc:pool");
  {
    auto l = pool.acquire();
    REQUIRE(l->create_if_absent(key, "0").ok());
  }
  constexpr int threads = 16, each = 40;
  noclobber::retry_policy policy;
  policy.max_attempts = 100000;
  policy.backoff =
      noclobber::backoff_policy::full_jitter(std::chrono::microseconds(100), std::chrono::milliseconds(5));
  std::atomic<int> failed{0};
  std::latch start(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < each; ++i) {
        auto l = pool.acquire();  // a different connection each time, WATCH state never shared
        auto r = noclobber::read_modify_write(
            *l, key,
            [](const std::optional<std::string>& cur) -> noclobber::update<std::string> {
              return std::to_string(std::stoll(cur.value_or("0")) + 1);
            },
            policy);
        if (!r.ok()) failed.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failed.load() == 0);
  auto l = pool.acquire();
  CHECK(l->read(key).value == std::to_string(threads * each));
  raw(l->native_handle(), {"DEL", key});
  CHECK_THROWS_AS(rd::store_pool(addr(), 0), std::invalid_argument);
}

TEST_CASE("redis: transport failures are transient before a write, indeterminate after", "[server][redis]") {
  CHECK_THROWS_AS(rd::store("127.0.0.1:" + std::to_string(nc_test::closed_port())), std::runtime_error);
  CHECK_THROWS_AS(rd::store("no-port"), std::invalid_argument);
  CHECK_THROWS_AS(rd::store("127.0.0.1:99999"), std::invalid_argument);
  CHECK_THROWS_AS(rd::store("127.0.0.1", 6379, rd::method::watch_multi_exec, std::chrono::milliseconds(0)),
                  std::invalid_argument);

  nc_test::silent_listener silent;  // accepts, never answers
  rd::store s("127.0.0.1", silent.port(), rd::method::watch_multi_exec, std::chrono::milliseconds(100));
  const std::string tok(32, 'a');
  CHECK(s.read("k").status == noclobber::read_status::transient);
  CHECK(s.write_if_match("k", tok, "v").status == write_status::transient);   // timed out at WATCH
  CHECK(s.create_if_absent("k", "v").status == write_status::indeterminate);  // SET NX sent
  CHECK(s.overwrite("k", "v").status == write_status::indeterminate);
  rd::store lua("127.0.0.1", silent.port(), rd::method::lua_compare_and_set, std::chrono::milliseconds(100));
  CHECK(lua.write_if_match("k", tok, "v").status == write_status::transient);  // SCRIPT LOAD timed out
  CHECK_THROWS_AS(s.write_if_match("k", "short", "v"), std::invalid_argument);

  // Reconnects after the server dropped the connection.
  rd::store live(addr());
  rd::store killer(addr());
  auto id = raw(live.native_handle(), {"CLIENT", "ID"});
  raw(killer.native_handle(), {"CLIENT", "KILL", "ID", std::to_string(id->integer)});
  const std::string key = nc_test::unique_name("nc:reconnect");
  CHECK(live.read(key).status == noclobber::read_status::transient);  // the dead connection
  CHECK(live.read(key).status == noclobber::read_status::absent);     // a fresh one
}

TEST_CASE("redis: a connection that dies between WATCH and EXEC changes nothing and blocks no one",
          "[server][redis]") {
  // What a writer killed inside write_if_match leaves behind: WATCH armed, MULTI open, a SET
  // queued, then the socket closes. Redis discards the queued transaction with the connection.
  rd::store s(addr());
  const std::string key = nc_test::unique_name("nc:dead-exec");
  REQUIRE(s.create_if_absent(key, "0").ok());
  const auto before = s.read(key);
  {
    auto [host, port] = rd::parse_address(addr());
    redisContext* dying = redisConnect(host.c_str(), port);
    REQUIRE(dying != nullptr);
    raw(dying, {"WATCH", key});
    raw(dying, {"GET", key});
    raw(dying, {"MULTI"});
    raw(dying, {"SET", key, std::string(32, 'd') + "never"});
    redisFree(dying);  // no EXEC: the process is gone
  }
  auto after = s.read(key);
  REQUIRE(after.found());
  CHECK(after.token == before.token);
  CHECK(after.value == "0");
  auto w = s.write_if_match(key, after.token, "1");
  CHECK(w.ok());
  raw(s.native_handle(), {"DEL", key});
}

TEST_CASE("redis: 4 writer processes at once lose nothing", "[server][redis][process][concurrency]") {
  for (const char* adapter : {"redis", "redis_lua"}) {
    INFO(adapter);
    rd::store s(addr());
    const std::string key = nc_test::unique_name("nc:procs");
    REQUIRE(s.create_if_absent(key, "0").ok());
    std::vector<std::unique_ptr<nc_test::writer_process>> ws;
    for (int i = 0; i < 4; ++i) {
      ws.push_back(std::make_unique<nc_test::writer_process>(
          std::vector<std::string>{adapter, "-", key, "150", "gated"}));
    }
    nc_test::start_together(ws);
    for (auto& w : ws) CHECK(w->wait() == 0);
    CHECK(s.read(key).value == "600");
    raw(s.native_handle(), {"DEL", key});
  }
}

TEST_CASE("redis: a writer killed between read and write loses nothing and blocks no one",
          "[server][redis][process][concurrency]") {
  rd::store s(addr());
  const std::string key = nc_test::unique_name("nc:killed");
  REQUIRE(s.create_if_absent(key, "0").ok());
  nc_test::writer_process victim({"redis", "-", key, "1", "hold"});
  REQUIRE(victim.wait_for_line("READ"));
  victim.kill_now();
  std::vector<std::unique_ptr<nc_test::writer_process>> ws;
  for (int i = 0; i < 4; ++i) {
    ws.push_back(
        std::make_unique<nc_test::writer_process>(std::vector<std::string>{"redis", "-", key, "50", "run"}));
  }
  for (auto& w : ws) CHECK(w->wait() == 0);
  CHECK(s.read(key).value == "200");
  raw(s.native_handle(), {"DEL", key});
}

TEST_CASE(
    "redis: a writer process SIGKILLed inside write_if_match writes nothing, leaves nothing, blocks no one",
    "[server][redis][process][concurrency]") {
  // The victim (tests/servers/server_writer.cpp) reads the counter, goes on into write_if_match
  // as far as its mode says, prints ARMED and sleeps; it is SIGKILLed there while 4 survivors
  // keep incrementing the same key. The write it stopped in front of would set 1000000000.
  struct kill_point {
    const char* adapter;
    const char* mode;
  };
  for (const auto& [adapter, mode] :
       {kill_point{"redis", "watched"}, kill_point{"redis", "queued"}, kill_point{"redis_lua", "loaded"},
        kill_point{"redis_lua", "partial"}}) {
    INFO(adapter << " writer killed at '" << mode << "'");
    const std::string m = mode;
    rd::store s(addr());
    const std::string key = nc_test::unique_name("nc:sigkill");
    const std::string victim_name = "victim-" + key;
    REQUIRE(s.create_if_absent(key, "0").ok());

    nc_test::writer_process victim({adapter, "-", key, "1", mode});
    REQUIRE(victim.wait_for_line("ARMED"));
    const std::string armed = client_entry(s.native_handle(), victim_name);
    INFO("victim at the kill point: " << armed);
    REQUIRE_FALSE(armed.empty());
    CHECK(client_field(armed, "multi") == (m == "queued" ? "1" : "-1"));  // MULTI open, 1 command queued
    if (m == "queued") CHECK(client_field(armed, "flags").find('x') != std::string::npos);
    if (m == "loaded" || m == "partial")
      CHECK(client_field(armed, "cmd") == "script|load");  // no EVALSHA ran
    if (m == "partial") {  // the server holds the EVALSHA's first bytes in the victim's query buffer
      CHECK(eventually(
          [&] { return client_field(client_entry(s.native_handle(), victim_name), "qbuf") != "0"; },
          std::chrono::seconds(2)));
    }

    constexpr int survivors = 4, each = 100;
    std::vector<std::unique_ptr<nc_test::writer_process>> ws;
    for (int i = 0; i < survivors; ++i) {
      ws.push_back(std::make_unique<nc_test::writer_process>(
          std::vector<std::string>{adapter, "-", key, std::to_string(each), "run"}));
    }
    // Kill once the survivors have changed the key (so the victim's WATCH is dirty) and before
    // they are done.
    REQUIRE(eventually([&] { return std::stoll(s.read(key).value) >= 5; }, std::chrono::seconds(20)));
    if (m == "watched" || m == "queued") {  // an EXEC now would fail: the watched key changed
      CHECK(client_field(client_entry(s.native_handle(), victim_name), "flags").find('d') !=
            std::string::npos);
    }
    const long long at_kill = std::stoll(s.read(key).value);
    victim.kill_now();
    CHECK(at_kill < survivors * each);  // killed while the survivors were still incrementing

    // The server drops the dead client and with it its WATCH, MULTI, queued SET or partial command.
    CHECK(eventually([&] { return client_entry(s.native_handle(), victim_name).empty(); },
                     std::chrono::seconds(5)));

    // No survivor is stuck, each acknowledged all its increments, and no increment was lost;
    // the victim's write (1000000000) never ran.
    for (auto& w : ws) CHECK(w->wait_for(std::chrono::seconds(60)) == 0);
    const auto final_read = s.read(key);
    REQUIRE(final_read.found());
    CHECK(final_read.value == std::to_string(survivors * each));
    raw(s.native_handle(), {"DEL", key});
  }
}

TEST_CASE("redis::parse_address: host:port, port 1..65535, anything else refused", "[server][redis]") {
  CHECK(rd::parse_address("localhost:6379") == std::pair<std::string, int>("localhost", 6379));
  CHECK(rd::parse_address("::1:65535") == std::pair<std::string, int>("::1", 65535));
  CHECK(rd::parse_address("h:00080") == std::pair<std::string, int>("h", 80));
  // Found by tests/fuzz/fuzz_text_parsers: the port kept being multiplied by 10 after it was
  // already refused, so a long run of characters overflowed an int (undefined behaviour; UBSan
  // and the fuzz corpus catch it, a plain build only sees the refusal).
  for (const char* bad : {"h:99999999999999999999999", "h:65536", "h:0", "h:", ":6379", "h:12a", "h:-1",
                          "h:5:\x18=1writers=535", "h:+80", "no-port"}) {
    INFO(bad);
    CHECK_THROWS_AS(rd::parse_address(bad), std::invalid_argument);
  }
}

using nc_test::canned_redis_server;
using nc_test::resp_bulk;

TEST_CASE("redis: a refused MULTI is not a refused write, and leaves no WATCH", "[server][redis]") {
  // Found by tests/fuzz/fuzz_redis_answers. When MULTI is refused (a proxy without transactions,
  // an ACL without MULTI), the SET pipelined after it runs on its own, unconditionally, and EXEC
  // answers "EXEC without MULTI", which left the write reported as permanent (not applied) and
  // the WATCH armed on a connection that may go back to a pool.
  const std::string stamp(32, 'a');
  {
    canned_redis_server s({"+OK\r\n", resp_bulk(stamp + "old"), "-ERR unknown command 'MULTI'\r\n", "+OK\r\n",
                           "-ERR EXEC without MULTI\r\n", "+OK\r\n"});
    rd::store st("127.0.0.1", s.port());
    const auto w = st.write_if_match("k", stamp, "new");
    CHECK(w.status == write_status::indeterminate);  // it ran, without the compare
    CHECK(w.error.message.find("MULTI was refused") != std::string::npos);
    CHECK(s.commands() == std::vector<std::string>{"WATCH", "GET", "MULTI", "SET", "EXEC", "UNWATCH"});
  }
  {  // the write refused too: nothing ran, its own error decides
    canned_redis_server s({"+OK\r\n", resp_bulk(stamp + "old"), "-NOPERM no MULTI for you\r\n",
                           "-LOADING still loading\r\n", "-ERR EXEC without MULTI\r\n", "+OK\r\n"});
    rd::store st("127.0.0.1", s.port());
    const auto w = st.erase_if_match("k", stamp);
    CHECK(w.status == write_status::transient);
    CHECK(s.commands() == std::vector<std::string>{"WATCH", "GET", "MULTI", "DEL", "EXEC", "UNWATCH"});
  }
}

TEST_CASE("redis: an EXEC or EVALSHA answer of another shape may have written: indeterminate",
          "[server][redis]") {
  // Found by tests/fuzz/fuzz_redis_answers: these were permanent ("not applied"), although the
  // transaction or the script had run.
  const std::string stamp(32, 'b');
  {
    canned_redis_server s({"+OK\r\n", resp_bulk(stamp + "old"), "+OK\r\n", "+QUEUED\r\n", "*0\r\n"});
    rd::store st("127.0.0.1", s.port());
    CHECK(st.write_if_match("k", stamp, "new").status == write_status::indeterminate);
  }
  for (const char* answer : {"+OK\r\n", ":3\r\n", ":-1\r\n", "$1\r\n2\r\n"}) {
    INFO(answer);
    canned_redis_server s({resp_bulk("0123456789abcdef0123456789abcdef01234567"), answer});
    rd::store st("127.0.0.1", s.port(), rd::method::lua_compare_and_set);
    CHECK(st.write_if_match("k", stamp, "new").status == write_status::indeterminate);
  }
}

TEST_CASE("redis: against a user without MULTI the write says so and leaves no WATCH", "[server][redis]") {
  // The refused-MULTI case on a real server: an ACL user that may not run MULTI.
  rd::store s(addr());
  rd::store other(addr());
  const std::string key = nc_test::unique_name("nc:nomulti");
  const std::string user = nc_test::unique_name("nc_nomulti");
  raw(other.native_handle(), {"ACL", "SETUSER", user, "on", ">pw", "~*", "&*"});
  raw(other.native_handle(), {"ACL", "SETUSER", user, "+@all", "-multi"});
  REQUIRE(s.create_if_absent(key, "0").ok());
  const auto before = s.read(key);
  REQUIRE(before.found());
  auto auth = raw(s.native_handle(), {"AUTH", user, "pw"});
  REQUIRE(auth->type == REDIS_REPLY_STATUS);
  const auto w = s.write_if_match(key, before.token, "1");
  CHECK(w.status == write_status::indeterminate);
  CHECK(w.error.message.find("MULTI was refused") != std::string::npos);
  const auto after = other.read(key);
  REQUIRE(after.found());
  CHECK(after.value == "1");  // it did run, unconditionally
  // Back to the default user (AUTH keeps a connection's WATCH), to probe with MULTI/EXEC.
  auto back = raw(s.native_handle(), {"AUTH", "default", "any"});
  REQUIRE(back->type == REDIS_REPLY_STATUS);
  CHECK(no_watch_armed(s.native_handle(), other.native_handle(), key));
  raw(other.native_handle(), {"ACL", "DELUSER", user});
  raw(other.native_handle(), {"DEL", key, key + ":probe"});
}
