// Each adapter's read_modify_write against a hand-written client doing the same work on the same
// server in the same run: one writer, one key, read a decimal counter, add one, write it back
// conditionally. The hand-written peers use the client library directly (libpq, hiredis) or the
// same thin libcurl wrapper the adapters use (etcd, HTTP), with the plainest correct protocol:
//   postgres    SELECT value, version; UPDATE … WHERE key AND version RETURNING version
//   row lock    BEGIN; SET LOCAL lock_timeout; SELECT … FOR UPDATE; UPDATE; COMMIT
//   redis       WATCH; GET; MULTI; SET; EXEC          (plain value, no version stamp)
//   redis lua   GET; EVALSHA compare-and-set           (compares the whole value)
//   etcd        range; txn MOD == rev then put
//   http        GET (ETag); PUT If-Match
// Target: noclobber ≥ 0.9× the hand-written throughput.
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/http_etag.hpp>
#include <noclobber/adapters/postgres.hpp>
#include <noclobber/adapters/redis.hpp>
#include <noclobber/read_modify_write.hpp>

#include "bench_env.hpp"

namespace {

namespace pg = noclobber::postgres;
using json = nlohmann::json;
using noclobber::detail::base64_decode;
using noclobber::detail::base64_encode;

auto increment = [](const std::optional<std::string>& cur) -> noclobber::update<std::string> {
  return std::to_string((cur && !cur->empty() ? std::stoll(*cur) : 0) + 1);
};

template <class Store>
void run_rmw(benchmark::State& state, Store& s, const std::string& key) {
  std::int64_t attempts = 0;
  for (auto _ : state) {
    auto r = noclobber::read_modify_write(s, key, increment);
    if (!r.ok()) state.SkipWithError(("gave up: " + r.last_error.message).c_str());
    attempts += r.attempts;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["attempts/op"] = static_cast<double>(attempts) / static_cast<double>(state.iterations());
}

// ---- PostgreSQL -------------------------------------------------------------------------------

const std::string& pg_table() {
  static const std::string t = [] {
    std::string name = nc_bench::unique("nc_bench");
    pg::store s(nc_bench::server_env("NOCLOBBER_PG_CONNINFO"), name);
    s.ensure_table();
    return name;
  }();
  return t;
}

void BM_postgres_noclobber_rmw(benchmark::State& state) {
  pg::store s(nc_bench::server_env("NOCLOBBER_PG_CONNINFO"), pg_table());
  run_rmw(state, s, nc_bench::unique("rmw"));
}

std::int64_t be64(const char* p) {
  return pg::detail::read_be_int64(p);
}

void BM_postgres_hand_written(benchmark::State& state) {
  PGconn* c = PQconnectdb(nc_bench::server_env("NOCLOBBER_PG_CONNINFO").c_str());
  const std::string t = pg_table(), key = nc_bench::unique("hand");
  const std::string sel = "SELECT value, version FROM " + t + " WHERE key = $1";
  const std::string upd = "UPDATE " + t + " SET value = $3, version = nextval('" + t +
                          "_version') WHERE key = $1 AND version = $2 RETURNING version";
  const std::string ins = "INSERT INTO " + t + " (key, value, version) VALUES ($1, '0', nextval('" + t +
                          "_version')) ON CONFLICT DO NOTHING";
  PQclear(PQexecParams(c, ins.c_str(), 1, nullptr, std::array<const char*, 1>{key.c_str()}.data(), nullptr,
                       nullptr, 0));
  for (auto _ : state) {
    for (;;) {
      const char* p1[] = {key.c_str()};
      PGresult* r = PQexecParams(c, sel.c_str(), 1, nullptr, p1, nullptr, nullptr, 1);
      std::string value(PQgetvalue(r, 0, 0), static_cast<std::size_t>(PQgetlength(r, 0, 0)));
      const std::string ver(PQgetvalue(r, 0, 1), 8);
      PQclear(r);
      const std::string next = std::to_string(std::stoll(value) + 1);
      const char* p3[] = {key.c_str(), ver.data(), next.data()};
      const int lens[] = {0, 8, static_cast<int>(next.size())};
      const int fmts[] = {0, 1, 1};
      r = PQexecParams(c, upd.c_str(), 3, nullptr, p3, lens, fmts, 1);
      const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
      if (ok) benchmark::DoNotOptimize(be64(PQgetvalue(r, 0, 0)));
      PQclear(r);
      if (ok) break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  PQfinish(c);
}

void BM_postgres_noclobber_row_lock(benchmark::State& state) {
  pg::store s(nc_bench::server_env("NOCLOBBER_PG_CONNINFO"), pg_table());
  const std::string key = nc_bench::unique("lock");
  (void)s.create_if_absent(key, "0");
  for (auto _ : state) {
    auto r = s.update_locked(key, [](const std::string& cur) {
      return pg::row_decision::set(std::to_string(std::stoll(cur) + 1));
    });
    if (!r.ok()) state.SkipWithError(r.error.message.c_str());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_postgres_hand_written_row_lock(benchmark::State& state) {
  PGconn* c = PQconnectdb(nc_bench::server_env("NOCLOBBER_PG_CONNINFO").c_str());
  const std::string t = pg_table(), key = nc_bench::unique("handlock");
  const std::string sel = "SELECT value FROM " + t + " WHERE key = $1 FOR UPDATE";
  const std::string upd =
      "UPDATE " + t + " SET value = $2, version = nextval('" + t + "_version') WHERE key = $1";
  const std::string ins = "INSERT INTO " + t + " (key, value, version) VALUES ($1, '0', nextval('" + t +
                          "_version')) ON CONFLICT DO NOTHING";
  PQclear(PQexecParams(c, ins.c_str(), 1, nullptr, std::array<const char*, 1>{key.c_str()}.data(), nullptr,
                       nullptr, 0));
  for (auto _ : state) {
    PQclear(PQexec(c, "BEGIN; SET LOCAL lock_timeout = '3000ms'"));
    const char* p1[] = {key.c_str()};
    PGresult* r = PQexecParams(c, sel.c_str(), 1, nullptr, p1, nullptr, nullptr, 1);
    const std::string next = std::to_string(
        std::stoll(std::string(PQgetvalue(r, 0, 0), static_cast<std::size_t>(PQgetlength(r, 0, 0)))) + 1);
    PQclear(r);
    const char* p2[] = {key.c_str(), next.data()};
    const int lens[] = {0, static_cast<int>(next.size())};
    const int fmts[] = {0, 1};
    PQclear(PQexecParams(c, upd.c_str(), 2, nullptr, p2, lens, fmts, 1));
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) state.SkipWithError("commit failed");
    PQclear(r);
  }
  state.SetItemsProcessed(state.iterations());
  PQfinish(c);
}

// ---- Redis ------------------------------------------------------------------------------------

redisReply* cmd(redisContext* c, std::initializer_list<std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> len;
  for (auto a : args) {
    argv.push_back(a.data());
    len.push_back(a.size());
  }
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), len.data()));
}

void BM_redis_noclobber_watch(benchmark::State& state) {
  noclobber::redis::store s(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"),
                            noclobber::redis::method::watch_multi_exec);
  run_rmw(state, s, nc_bench::unique("rmw"));
}

void BM_redis_hand_written_watch(benchmark::State& state) {
  auto [host, port] = noclobber::redis::parse_address(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"));
  redisContext* c = redisConnect(host.c_str(), port);
  const std::string key = nc_bench::unique("hand");
  freeReplyObject(cmd(c, {"SET", key, "0"}));
  for (auto _ : state) {
    for (;;) {
      freeReplyObject(cmd(c, {"WATCH", key}));
      redisReply* g = cmd(c, {"GET", key});
      const std::string next = std::to_string(std::stoll(std::string(g->str, g->len)) + 1);
      freeReplyObject(g);
      const char* m[] = {"MULTI"};
      const char* set[] = {"SET", key.c_str(), next.c_str()};
      const char* ex[] = {"EXEC"};
      redisAppendCommandArgv(c, 1, m, nullptr);
      redisAppendCommandArgv(c, 3, set, nullptr);
      redisAppendCommandArgv(c, 1, ex, nullptr);
      void* r = nullptr;
      for (int i = 0; i < 3; ++i) {
        if (r) freeReplyObject(r);
        redisGetReply(c, &r);
      }
      const bool ok = static_cast<redisReply*>(r)->type == REDIS_REPLY_ARRAY;
      freeReplyObject(r);
      if (ok) break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  redisFree(c);
}

void BM_redis_noclobber_lua(benchmark::State& state) {
  noclobber::redis::store s(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"),
                            noclobber::redis::method::lua_compare_and_set);
  run_rmw(state, s, nc_bench::unique("rmwlua"));
}

void BM_redis_hand_written_lua(benchmark::State& state) {
  auto [host, port] = noclobber::redis::parse_address(nc_bench::server_env("NOCLOBBER_REDIS_ADDR"));
  redisContext* c = redisConnect(host.c_str(), port);
  const std::string key = nc_bench::unique("handlua");
  freeReplyObject(cmd(c, {"SET", key, "0"}));
  redisReply* l = cmd(c, {"SCRIPT", "LOAD",
                          "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) "
                          "return 1 end return 0"});
  const std::string sha(l->str, l->len);
  freeReplyObject(l);
  for (auto _ : state) {
    for (;;) {
      redisReply* g = cmd(c, {"GET", key});
      const std::string cur(g->str, g->len);
      freeReplyObject(g);
      redisReply* r = cmd(c, {"EVALSHA", sha, "1", key, cur, std::to_string(std::stoll(cur) + 1)});
      const bool ok = r->integer == 1;
      freeReplyObject(r);
      if (ok) break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  redisFree(c);
}

// ---- etcd -------------------------------------------------------------------------------------

void BM_etcd_noclobber(benchmark::State& state) {
  noclobber::etcd::store s(nc_bench::server_env("NOCLOBBER_ETCD_URL"));
  run_rmw(state, s, nc_bench::unique("rmw"));
}

void BM_etcd_hand_written(benchmark::State& state) {
  const std::string base = nc_bench::server_env("NOCLOBBER_ETCD_URL");
  noclobber::detail::curl::easy http(std::chrono::seconds(5));
  const std::string k = base64_encode(nc_bench::unique("hand"));
  (void)http.perform("POST", base + "/v3/kv/put", json{{"key", k}, {"value", base64_encode("0")}}.dump());
  for (auto _ : state) {
    for (;;) {
      auto r = http.perform("POST", base + "/v3/kv/range", json{{"key", k}}.dump());
      const json doc = json::parse(r.body);
      const json& kv = doc.at("kvs").at(0);
      const std::string rev = kv.at("mod_revision").get<std::string>();
      const std::string next =
          std::to_string(std::stoll(*base64_decode(kv.at("value").get<std::string>())) + 1);
      const json txn = {
          {"compare",
           json::array({{{"key", k}, {"target", "MOD"}, {"mod_revision", rev}, {"result", "EQUAL"}}})},
          {"success", json::array({{{"request_put", {{"key", k}, {"value", base64_encode(next)}}}}})}};
      auto t = http.perform("POST", base + "/v3/kv/txn", txn.dump());
      const json tdoc = json::parse(t.body, nullptr, false);
      if (tdoc.is_object() && tdoc.value("succeeded", false)) break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- HTTP ETag (Apache mod_dav) ---------------------------------------------------------------

void BM_http_noclobber(benchmark::State& state) {
  noclobber::http_etag::store s(nc_bench::server_env("NOCLOBBER_DAV_URL"));
  run_rmw(state, s, nc_bench::unique("rmw"));
}

void BM_http_hand_written(benchmark::State& state) {
  std::string base = nc_bench::server_env("NOCLOBBER_DAV_URL");
  if (base.back() != '/') base += '/';
  noclobber::detail::curl::easy http(std::chrono::seconds(5));
  const std::string url = base + nc_bench::unique("hand");
  (void)http.perform("PUT", url, "0");
  for (auto _ : state) {
    for (;;) {
      auto g = http.perform("GET", url, {});
      auto p = http.perform("PUT", url, std::to_string(std::stoll(g.body) + 1), {"If-Match: " + g.etag});
      if (p.status / 100 == 2) break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

// Peers side by side; a fixed minimum time keeps the server's state comparable between them.
BENCHMARK(BM_postgres_hand_written)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_postgres_noclobber_rmw)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_postgres_hand_written_row_lock)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_postgres_noclobber_row_lock)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_hand_written_watch)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_noclobber_watch)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_hand_written_lua)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_redis_noclobber_lua)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_etcd_hand_written)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_etcd_noclobber)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_http_hand_written)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_http_noclobber)->MinTime(1.0)->UseRealTime();

BENCHMARK_MAIN();
