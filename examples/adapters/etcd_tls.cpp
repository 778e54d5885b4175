// example: examples/adapters/etcd_tls.cpp
// etcd over https with a client certificate (etcd --client-cert-auth): `tls_files` names the CA
// that signed etcd's certificate and our certificate and key; the store and the lease backend
// send them on every request. A CA that did not sign etcd's certificate is refused at once,
// permanently (curl 60), never retried. Needs NOCLOBBER_ETCD_TLS_URL ("https://127.0.0.1:2379"),
// NOCLOBBER_ETCD_TLS_CA, _CERT and _KEY (scripts/servers/etcd_tls.sh starts such an etcd).
#include <noclobber/adapters/etcd.hpp>
#include <noclobber/adapters/etcd_lease.hpp>
#include <noclobber/read_modify_write.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  const char* url = std::getenv("NOCLOBBER_ETCD_TLS_URL");
  const char* ca = std::getenv("NOCLOBBER_ETCD_TLS_CA");
  const char* cert = std::getenv("NOCLOBBER_ETCD_TLS_CERT");
  const char* key = std::getenv("NOCLOBBER_ETCD_TLS_KEY");
  if (!url || !ca || !cert || !key) return std::puts("set NOCLOBBER_ETCD_TLS_{URL,CA,CERT,KEY}"), 1;

  namespace et = noclobber::etcd;
  const et::tls_files tls{ca, cert, key};
  et::store store(url, tls, std::chrono::seconds(2));
  auto r = noclobber::read_modify_write(
      store, "config/tls-counter",
      [](const std::optional<std::string>& cur) { return std::to_string(cur ? std::stoll(*cur) + 1 : 1); });
  if (!r.ok()) return std::printf("gave up: %s\n", r.last_error.message.c_str()), 1;
  std::printf("tls-counter = %s\n", r.value->c_str());

  et::lease_backend locks(url, tls, "example/locks/");
  auto lease = locks.try_acquire("report", std::chrono::seconds(5));
  if (lease.status != noclobber::lease_status::acquired) return std::puts("no lease"), 1;
  std::printf("lease token %llu\n", static_cast<unsigned long long>(lease.grant.token));
  (void)locks.release("report", lease.grant);

  // Our own certificate as the CA: etcd's certificate does not verify -> permanent, at once.
  et::store wrong(url, et::tls_files{cert, cert, key});
  auto w = wrong.read("config/tls-counter");
  std::printf("wrong CA: %s %s\n", w.error.code.c_str(), w.error.message.c_str());
  return w.status == noclobber::read_status::permanent ? 0 : 1;
}
