// The POSIX nemesis actions (noclobber/race_harness/posix/{process,network}.hpp) on processes and
// namespaces this test creates: run_command's status, output and time limit (the whole process
// group killed); kill_fault kills and restarts; pause_fault stops and continues; command_fault;
// partition_fault cuts a namespace off (nft rules, or the link down) so that a TCP connect fails,
// and heals it so that it works again — also when only the nemesis's stop() heals it. Nothing is
// left behind: every process is reaped and every namespace removed, also when a check fails.
//
// tests/faults/latency_proxy.hpp: the proxy reads on while it holds chunks (a delay line), and
// latency_fault slows the proxy its pick names and heals them all.
//
// The namespace test needs root, `ip` and `nft`: it is labelled `server_fault` (scripts/test_faults.sh).
#include <noclobber/race_harness/nemesis.hpp>
#include <noclobber/race_harness/posix/network.hpp>
#include <noclobber/race_harness/posix/process.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "faults/latency_proxy.hpp"
#include "loopback.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nc = noclobber;
namespace posix = noclobber::posix;
using namespace std::chrono_literals;

namespace {

// A `sleep` started in the background (its own session), its pid printed; killed at scope end.
struct background_sleep {
  pid_t pid = 0;
  background_sleep() { pid = start(); }
  background_sleep(const background_sleep&) = delete;
  background_sleep& operator=(const background_sleep&) = delete;
  ~background_sleep() { kill_it(); }
  static pid_t start() {
    const std::string out =
        posix::run_checked({"sh", "-c", "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!"});
    return static_cast<pid_t>(std::stol(out));
  }
  void kill_it() const {
    if (pid > 0 && posix::process_alive(pid)) {
      ::kill(pid, SIGCONT);
      ::kill(pid, SIGKILL);
      (void)posix::wait_gone({pid}, 5s);
    }
  }
};

char process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

}  // namespace

TEST_CASE("run_command: exit status, output, and the time limit kills the whole process group") {
  const auto ok = posix::run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(ok.status == 3);
  CHECK(ok.output.find("out") != std::string::npos);
  CHECK(ok.output.find("err") != std::string::npos);
  CHECK_FALSE(ok.timed_out);

  const auto missing = posix::run_command({"noclobber-no-such-program"});
  CHECK(missing.status != 0);

  // A child that outlives its shell would keep the pipe open: the group is killed at the limit.
  // Had it not been, run_command would have waited for the sleep: the bound is the sleep itself,
  // not a guess at how fast the machine is.
  const auto t0 = std::chrono::steady_clock::now();
  const auto slow = posix::run_command({"sh", "-c", "sleep 120 & echo $!; wait"}, 300ms);
  CHECK(slow.timed_out);
  CHECK(slow.status == -1);
  CHECK(std::chrono::steady_clock::now() - t0 < 120s);
  const pid_t child = static_cast<pid_t>(std::stol(slow.output));
  CHECK(posix::wait_gone({child}, 5s));

  CHECK_THROWS_WITH(posix::run_checked({"sh", "-c", "echo nope; exit 1"}),
                    Catch::Contains("exit 1") && Catch::Contains("nope"));
  CHECK_THROWS_AS(posix::run_command({}), std::invalid_argument);
}

TEST_CASE("kill_fault SIGKILLs the target and its heal runs the restart command once") {
  background_sleep first;
  background_sleep second;  // what the restart "starts": its pid file
  const std::string pid_file = "/tmp/ncf-test-restart-" + std::to_string(::getpid());
  posix::kill_fault kill("kill",
                         [&](std::uint64_t) {
                           return posix::process_target{{first.pid}, "sleep", "7"};
                         },
                         {"sh", "-c", "echo {id} > " + pid_file});
  CHECK(kill.heal() == "nothing to restart");
  const std::string did = kill.inject(0);
  CHECK(did.find("SIGKILL sleep") != std::string::npos);
  CHECK_FALSE(posix::process_alive(first.pid));
  CHECK(kill.heal() == "restarted sleep");
  std::ifstream in(pid_file);
  std::string id;
  in >> id;
  CHECK(id == "7");  // "{id}" replaced by the target's id
  std::remove(pid_file.c_str());
  CHECK(kill.heal() == "nothing to restart");  // idempotent
  CHECK(posix::process_alive(second.pid));
}

TEST_CASE("pause_fault stops the target (state T) and its heal continues it; stop() heals a held pause",
          "[concurrency]") {
  background_sleep s;
  auto pause = std::make_shared<posix::pause_fault>("pause", [&](std::uint64_t) {
    return posix::process_target{{s.pid}, "sleep", "1"};
  });
  nc::nemesis_options o;
  o.faults = 1;
  o.gap = 1;
  o.hold = 600000;  // held until stop()
  nc::nemesis n({pause}, o);
  n.start();
  for (int i = 0; i < 6000 && process_state(s.pid) != 'T'; ++i) std::this_thread::sleep_for(10ms);  // <= 60 s
  CHECK(process_state(s.pid) == 'T');
  n.stop();
  CHECK(process_state(s.pid) != 'T');
  CHECK(posix::process_alive(s.pid));
  CHECK(pause->heal() == "nothing to resume");
  CHECK_THROWS(posix::pause_fault("p", [](std::uint64_t) {
                 return posix::process_target{{}, "none", ""};
               }).inject(0));
}

TEST_CASE("command_fault runs its inject and heal commands; a failing command throws with its output") {
  const std::string flag = "/tmp/ncf-test-flag-" + std::to_string(::getpid());
  posix::command_fault f("flag",
                         [&](std::uint64_t r) {
                           return std::vector<std::string>{
                               "sh", "-c", "echo " + std::to_string(r) + " > " + flag + "; echo set"};
                         },
                         {"rm", "-f", flag});
  CHECK(f.heal() == "nothing to heal");
  CHECK(f.inject(42) == "sh: set");
  CHECK(std::ifstream(flag).good());
  CHECK(f.heal() == "ran rm");
  CHECK_FALSE(std::ifstream(flag).good());
  posix::command_fault bad("bad", [](std::uint64_t) {
    return std::vector<std::string>{"sh", "-c", "echo broken; exit 2"};
  });
  CHECK_THROWS_WITH(bad.inject(0), Catch::Contains("broken"));
}

// scripts/servers/common.sh's free_port, which every server and cluster script uses for the ports
// its servers will listen on: a port from the kernel's ephemeral range can become the source port
// of an outgoing connection before the server binds it (an etcd member dialing its peers while the
// next member starts), so free_port must stay below that range. CI once lost a cluster to this.
namespace {
bool port_free_on_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}
}  // namespace

TEST_CASE("free_port picks ports below the ephemeral range, each one free to bind") {
  std::ifstream range_file("/proc/sys/net/ipv4/ip_local_port_range");
  int ephemeral_low = 0;
  range_file >> ephemeral_low;
  REQUIRE(ephemeral_low > 10001);
  const std::string script = std::string(NOCLOBBER_SOURCE_DIR) + "/scripts/servers/common.sh";
  const std::string out = posix::run_checked(
      {"bash", "-c", "set -e; . \"$1\"; for i in $(seq 1 40); do free_port; done", "bash", script});
  std::istringstream ports(out);
  int count = 0;
  for (int port = 0; ports >> port; ++count) {
    INFO("port " << port);
    CHECK(port >= 10000);
    CHECK(port < ephemeral_low);
    CHECK(port_free_on_loopback(port));
  }
  CHECK(count == 40);
}

// Scripts run side by side (CI's server and fault stages) pick ports at the same time: free_port
// reserves each port it hands out, so no two calls get the same one. A range of 12 ports and its
// own reservation folder: 12 calls get 12 different ports, the 13th finds none (without the
// reservation, 12 random picks from 12 free ports repeat one with probability 1 - 12!/12^12).
TEST_CASE("free_port never hands out a port twice, also to scripts running side by side") {
  char folder[] = "/tmp/noclobber-ports-test.XXXXXX";
  REQUIRE(::mkdtemp(folder) != nullptr);
  const std::string script = std::string(NOCLOBBER_SOURCE_DIR) + "/scripts/servers/common.sh";
  const std::string out = posix::run_checked(
      {"env", std::string("NOCLOBBER_PORT_DIR=") + folder, "NOCLOBBER_PORT_RANGE=10100-10111", "bash", "-c",
       ". \"$1\"; for i in $(seq 1 13); do free_port || { echo refused; break; }; done 2>&1", "bash",
       script});
  posix::run_checked({"rm", "-rf", folder});
  INFO(out);
  std::istringstream lines(out);
  std::set<int> ports;
  int handed_out = 0;
  std::string line;
  while (std::getline(lines, line) && line.find_first_not_of("0123456789") == std::string::npos) {
    ports.insert(std::stoi(line));
    ++handed_out;
  }
  CHECK(handed_out >= 10);  // a port of the range may be bound by something else on this machine
  CHECK(ports.size() == static_cast<std::size_t>(handed_out));
  CHECK(out.find("free_port: no free, unreserved port in 10100-10111") != std::string::npos);
}

namespace {

// Two network namespaces joined by one veth pair (eth0 in each), created here and removed in the
// destructor, also when a check fails. Named ncf<4 hex>… so scripts/clusters/sweep.sh finds them
// should the test die.
struct namespace_pair {
  std::string tag;
  std::string a, b;
  std::string ip_a, ip_b;
  bool ok = false;

  namespace_pair() {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04x", static_cast<unsigned>(::getpid()) & 0xffffu);
    tag = hex;
    a = "ncf" + tag + "ta";
    b = "ncf" + tag + "tb";
    const unsigned net = 1 + static_cast<unsigned>(::getpid()) % 250;
    ip_a = "10.232." + std::to_string(net) + ".1";
    ip_b = "10.232." + std::to_string(net) + ".2";
    remove();
    const std::vector<std::vector<std::string>> steps = {
        {"ip", "netns", "add", a},
        {"ip", "netns", "add", b},
        {"ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b},
        {"ip", "-n", a, "addr", "add", ip_a + "/24", "dev", "eth0"},
        {"ip", "-n", b, "addr", "add", ip_b + "/24", "dev", "eth0"},
        {"ip", "-n", a, "link", "set", "eth0", "up"},
        {"ip", "-n", b, "link", "set", "eth0", "up"},
        {"ip", "-n", a, "link", "set", "lo", "up"},
        {"ip", "-n", b, "link", "set", "lo", "up"},
    };
    for (const auto& s : steps) {
      const auto r = posix::run_command(s, 10s);
      if (!r.ok()) {
        WARN("namespace setup failed (" << s[1] << " " << s[2] << "): " << r.output);
        return;
      }
    }
    ok = true;
  }
  namespace_pair(const namespace_pair&) = delete;
  namespace_pair& operator=(const namespace_pair&) = delete;
  ~namespace_pair() { remove(); }
  void remove() const {
    (void)posix::run_command({"ip", "netns", "delete", a}, 10s);
    (void)posix::run_command({"ip", "netns", "delete", b}, 10s);
  }
};

// Runs `fn` on a thread that entered network namespace `ns` (setns affects only that thread).
template <class Fn>
auto in_namespace(const std::string& ns, Fn fn) {
  decltype(fn()) out{};
  std::thread t([&] {
    const int fd = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    const bool entered = ::setns(fd, CLONE_NEWNET) == 0;
    ::close(fd);
    if (entered) out = fn();
  });
  t.join();
  return out;
}

// A listening socket in namespace `ns` on port `port` (fd; -1 on failure).
int listen_in(const std::string& ns, const std::string& ip, int port) {
  return in_namespace(ns, [&]() -> int {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 16) != 0) {
      ::close(s);
      return -1;
    }
    return s;
  });
}

// Whether a TCP connect from namespace `ns` to ip:port completes within 300 ms.
bool connects(const std::string& ns, const std::string& ip, int port) {
  return in_namespace(ns, [&]() -> bool {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    bool done = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (!done && errno == EINPROGRESS) {
      pollfd p{s, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      done = ::poll(&p, 1, 300) == 1 && ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    ::close(s);
    return done;
  });
}

bool nft_table_in(const std::string& ns) {
  return posix::run_command(
             {"ip", "netns", "exec", ns, "nft", "list", "table", "inet", posix::nemesis_nft_table})
      .ok();
}

}  // namespace

TEST_CASE("partition_fault cuts a namespace off and heals it: nft rules or the link, nothing left",
          "[fault][netns]") {
  namespace_pair ns;
  REQUIRE(ns.ok);
  const int port = 20000 + ::getpid() % 20000;
  const int listener = listen_in(ns.b, ns.ip_b, port);
  REQUIRE(listener >= 0);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_listener{listener};
  const std::vector<posix::netns_member> members = {{ns.a, ns.ip_a, "member a"}, {ns.b, ns.ip_b, "member b"}};
  REQUIRE(connects(ns.a, ns.ip_b, port));

  for (posix::cut how : {posix::cut::from_peers, posix::cut::from_everyone, posix::cut::link_down}) {
    INFO("cut " << static_cast<int>(how));
    posix::partition_fault f("cut", members, how, [](std::uint64_t) { return std::size_t{0}; });
    CHECK(f.heal() == "nothing to heal");
    const std::string did = f.inject(0);
    CHECK(did.find("member a") != std::string::npos);
    CHECK_FALSE(connects(ns.a, ns.ip_b, port));
    CHECK(nft_table_in(ns.a) == (how != posix::cut::link_down));
    CHECK_FALSE(nft_table_in(ns.b));
    CHECK(f.heal() == "reconnected member a");
    CHECK_FALSE(nft_table_in(ns.a));
    CHECK(connects(ns.a, ns.ip_b, port));
    CHECK(f.heal() == "nothing to heal");
  }

  // Held by a nemesis past the test's end: stop() heals it.
  {
    auto f = std::make_shared<posix::partition_fault>("cut", members, posix::cut::from_peers);
    nc::nemesis_options o;
    o.faults = 1;
    o.gap = 1;
    o.hold = 600000;
    o.seed = 3;
    nc::nemesis n({f}, o);
    n.start();
    const std::string victim = (n.schedule()[0].random % 2 == 0) ? ns.a : ns.b;
    for (int i = 0; i < 500 && !nft_table_in(victim); ++i) std::this_thread::sleep_for(10ms);
    CHECK(nft_table_in(victim));
    n.stop();
    CHECK_FALSE(nft_table_in(victim));
    CHECK(connects(ns.a, ns.ip_b, port));
  }
  CHECK_THROWS_AS(posix::partition_fault("x", {members[0]}, posix::cut::link_down), std::invalid_argument);
}

namespace {

// Waits up to 10 s until `proxy` holds `n` chunks.
bool holds(const nc_faults::latency_proxy& proxy, std::uint64_t n) {
  for (int i = 0; i < 1000 && proxy.held() != n; ++i) std::this_thread::sleep_for(10ms);
  return proxy.held() == n;
}

}  // namespace

TEST_CASE(
    "latency_proxy reads a chunk that arrives while another is held (a delay line, not a chunk at a time)") {
  // The target never accepts: the kernel's backlog completes the proxy's connection, and with a
  // 60 s delay nothing reaches it during the test anyway.
  const nc_loopback::listening_socket target = nc_loopback::listen_on_loopback("target");
  nc_faults::latency_proxy proxy("127.0.0.1", target.port);
  proxy.set_delay(60s);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(proxy.port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::send(client, "a", 1, MSG_NOSIGNAL) == 1);
  REQUIRE(holds(proxy, 1));
  REQUIRE(::send(client, "b", 1, MSG_NOSIGNAL) == 1);
  // Read on arrival and held its own delay; a proxy that read the next chunk only after sending
  // the held one would leave "b" in the socket for 60 s.
  CHECK(holds(proxy, 2));
  CHECK(proxy.delayed_chunks() == proxy.held());
  proxy.stop();  // drops what it holds
  CHECK(proxy.held() == 0);
  ::close(client);
  ::close(target.fd);
}

TEST_CASE("latency_fault slows the proxy its pick names at inject, and its heal every proxy") {
  const nc_loopback::listening_socket target = nc_loopback::listen_on_loopback("target");
  nc_faults::latency_proxy p0("127.0.0.1", target.port), p1("127.0.0.1", target.port);
  auto f = nc_faults::latency_fault(
      "slow", {&p0, &p1}, [](std::uint64_t r) { return std::size_t(r % 2); }, 700ms);
  CHECK(f->inject(3).find(std::to_string(p1.port())) != std::string::npos);
  CHECK(p0.delay() == 0ms);
  CHECK(p1.delay() == 700ms);
  p0.set_delay(5ms);
  CHECK(f->heal() == "latency 0 ms");
  CHECK(p0.delay() == 0ms);
  CHECK(p1.delay() == 0ms);
  auto bad = nc_faults::latency_fault(
      "slow", {&p0}, [](std::uint64_t) { return std::size_t{1}; }, 700ms);
  CHECK_THROWS_AS(bad->inject(0), std::out_of_range);
  ::close(target.fd);
}
