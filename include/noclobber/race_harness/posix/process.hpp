// noclobber/race_harness/posix/process.hpp — nemesis actions on processes (POSIX): kill and
// restart, pause and resume, and any fault a command can apply and undo.
//
// Overview
// --------
// The nemesis (noclobber/race_harness/nemesis.hpp) applies `fault_action`s; these act on the
// processes of a server the test started (scripts/clusters/*.sh start them and name their pids):
//
//   kill_fault     inject: SIGKILL the target's processes and wait until they are gone;
//                  heal:   run the restart command (once per kill).
//   pause_fault    inject: SIGSTOP the target's processes (a stalled VM, a long GC pause);
//                  heal:   SIGCONT the same processes.
//   command_fault  inject: run one command; heal: run another (pg_terminate_backend through
//                  psql, CLIENT KILL through redis-cli, promoting a replica, a script).
//
// A target is a function `pids(random) -> process_target` (which processes, and a label for
// the timeline), so it can pick "the current leader" at the moment of the fault, with the
// schedule's random number. `run_command` runs a program with a time limit, in its own process
// group (killed whole on timeout), and returns its exit status and output.
//
// Thread safety: run_command and the free functions are safe from any thread. An action is
// driven by one nemesis (inject and heal never run at once); it keeps what its last inject did
// under its own mutex, and calls the target function and commands with that mutex released.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "noclobber/race_harness/nemesis.hpp"
#include "noclobber/thread_annotations.hpp"

extern char** environ;

namespace noclobber::posix {

/// A command's exit status (128 + signal when killed; -1 when it could not start or ran past its
/// limit) and what it wrote to stdout and stderr.
struct command_result {
  int status = -1;
  std::string output;
  bool timed_out = false;

  [[nodiscard]] bool ok() const noexcept { return status == 0; }
};

/// Runs `argv` (argv[0] is looked up in PATH) with stdout and stderr captured, in a new process
/// group; after `limit` the whole group gets SIGKILL. Throws std::invalid_argument on an empty argv.
[[nodiscard]] inline command_result run_command(const std::vector<std::string>& argv,
                                                std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  if (argv.empty()) throw std::invalid_argument("noclobber::posix::run_command: empty argv");
  command_result out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.output = std::string("pipe: ") + std::strerror(errno);
    return out;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (std::string& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    out.output = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return out;
  }
  // Read until EOF (every process of the group closed the pipe) or the limit.
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
            .count();
    if (left <= 0) {
      out.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.output.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fds[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  out.status = out.timed_out ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return out;
}

/// Like run_command, but throws std::runtime_error (with the command and its output) unless it
/// exited 0; returns the output.
inline std::string run_checked(const std::vector<std::string>& argv,
                               std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  command_result r = run_command(argv, limit);
  if (!r.ok()) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    throw std::runtime_error(cmd + (r.timed_out ? ": timed out" : ": exit " + std::to_string(r.status)) +
                             ": " + r.output.substr(0, 2000));
  }
  return std::move(r.output);
}

/// The pid in a pid file (its first line); throws std::runtime_error when missing or malformed.
[[nodiscard]] inline pid_t read_pid_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) throw std::runtime_error("noclobber::posix: no pid in " + path);
  return static_cast<pid_t>(pid);
}

/// Whether `pid` is still a running (not zombie) process.
[[nodiscard]] inline bool process_alive(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return ::kill(pid, 0) == 0;
  const auto paren = line.rfind(')');
  return !(paren != std::string::npos && paren + 2 < line.size() &&
           (line[paren + 2] == 'Z' || line[paren + 2] == 'X'));
}

/// `pid` and every process below it (children, grandchildren: a server's worker processes), by
/// the parent pids in /proc. Empty when `pid` does not run.
[[nodiscard]] inline std::vector<pid_t> process_tree(pid_t pid) {
  std::vector<std::pair<pid_t, pid_t>> parent_of;  // (pid, ppid)
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      const pid_t p = static_cast<pid_t>(std::atol(e->d_name));
      if (p <= 0) continue;
      std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      const auto paren = line.rfind(')');
      if (paren == std::string::npos) continue;
      std::istringstream rest(line.substr(paren + 2));
      char state = 0;
      long ppid = 0;
      if (rest >> state >> ppid) parent_of.emplace_back(p, static_cast<pid_t>(ppid));
    }
    ::closedir(d);
  }
  std::vector<pid_t> out;
  if (!process_alive(pid)) return out;
  out.push_back(pid);
  for (std::size_t i = 0; i < out.size(); ++i) {
    for (const auto& [p, pp] : parent_of) {
      if (pp == out[i] && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  }
  return out;
}

/// Waits until none of `pids` runs; false when some still run after `limit`.
inline bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    bool any = false;
    for (pid_t p : pids) any = any || process_alive(p);
    if (!any) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

/// The processes a fault hits, how the timeline names them ("etcd member 2"), and the id a
/// restart command takes ("2": kill_fault puts it where its command says "{id}").
struct process_target {
  std::vector<pid_t> pids;
  std::string label;
  std::string id;
};
/// Picks the target at the moment of the fault (the schedule's random number in hand).
using target_fn = std::function<process_target(std::uint64_t random)>;

namespace detail {
inline std::string pid_list(const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}
inline void send_all(const std::vector<pid_t>& pids, int sig, const char* what) {
  if (pids.empty())
    throw std::runtime_error(std::string("noclobber::posix: ") + what + ": no process to signal");
  for (pid_t p : pids) {
    if (p <= 0)
      throw std::runtime_error(std::string("noclobber::posix: ") + what + ": bad pid " + std::to_string(p));
    if (::kill(p, sig) != 0 && errno != ESRCH) {
      throw std::runtime_error(std::string("noclobber::posix: ") + what + " " + std::to_string(p) + ": " +
                               std::strerror(errno));
    }
  }
}
}  // namespace detail

/// SIGKILL the target, then (heal) run `restart` (argv; "{id}" in an argument is replaced by the
/// target's id, so one command serves every member).
class kill_fault final : public fault_action {
 public:
  kill_fault(std::string name, target_fn target, std::vector<std::string> restart,
             std::chrono::milliseconds restart_limit = std::chrono::seconds(60))
      : name_(std::move(name)),
        target_(std::move(target)),
        restart_(std::move(restart)),
        limit_(restart_limit) {
    if (!target_ || restart_.empty())
      throw std::invalid_argument("noclobber::posix::kill_fault: needs a target and a restart command");
  }
  [[nodiscard]] std::string name() const override { return name_; }

  std::string inject(std::uint64_t random) override {
    process_target t = target_(random);
    {
      annotated_lock lock(mutex_);
      killed_ = t;  // heal restarts it even when the kill below fails half-way
      pending_ = true;
    }
    const auto picked = std::chrono::steady_clock::now();
    detail::send_all(t.pids, SIGKILL, "SIGKILL");
    if (!wait_gone(t.pids, std::chrono::seconds(10))) {
      throw std::runtime_error("noclobber::posix::kill_fault: " + t.label + " still runs 10 s after SIGKILL");
    }
    const auto gone_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - picked)
            .count();
    return "SIGKILL " + t.label + " (pid " + detail::pid_list(t.pids) + "; gone after " +
           std::to_string(gone_ms) + " ms)";
  }

  std::string heal() override {
    process_target t;
    {
      annotated_lock lock(mutex_);
      if (!pending_) return "nothing to restart";
      t = killed_;
    }
    std::vector<std::string> argv = restart_;
    for (std::string& a : argv) {
      for (auto at = a.find("{id}"); at != std::string::npos; at = a.find("{id}", at + t.id.size()))
        a.replace(at, 4, t.id);
    }
    (void)run_checked(argv, limit_);  // throws: still pending, the final heal tries again
    annotated_lock lock(mutex_);
    pending_ = false;
    return "restarted " + t.label;
  }

 private:
  std::string name_;
  target_fn target_;
  std::vector<std::string> restart_;
  std::chrono::milliseconds limit_;
  annotated_mutex mutex_;
  process_target killed_ NOCLOBBER_GUARDED_BY(mutex_);
  bool pending_ NOCLOBBER_GUARDED_BY(mutex_) = false;  // killed and not restarted yet
};

/// SIGSTOP the target's processes; heal: SIGCONT them.
class pause_fault final : public fault_action {
 public:
  pause_fault(std::string name, target_fn target) : name_(std::move(name)), target_(std::move(target)) {
    if (!target_) throw std::invalid_argument("noclobber::posix::pause_fault: needs a target");
  }
  [[nodiscard]] std::string name() const override { return name_; }

  std::string inject(std::uint64_t random) override {
    process_target t = target_(random);
    {
      annotated_lock lock(mutex_);
      paused_ = t;  // heal resumes them even when SIGSTOP fails half-way
    }
    detail::send_all(t.pids, SIGSTOP, "SIGSTOP");
    return "SIGSTOP " + t.label + " (pid " + detail::pid_list(t.pids) + ")";
  }

  std::string heal() override {
    process_target t;
    {
      annotated_lock lock(mutex_);
      t = std::exchange(paused_, {});
    }
    if (t.pids.empty()) return "nothing to resume";
    detail::send_all(t.pids, SIGCONT, "SIGCONT");
    return "SIGCONT " + t.label;
  }

 private:
  std::string name_;
  target_fn target_;
  annotated_mutex mutex_;
  process_target paused_ NOCLOBBER_GUARDED_BY(mutex_);
};

/// Runs `inject(random)`'s command to start the fault and `heal`'s to end it (heal runs only
/// after an inject). A command that exits non-zero throws (recorded by the nemesis).
class command_fault final : public fault_action {
 public:
  command_fault(std::string name, std::function<std::vector<std::string>(std::uint64_t random)> inject,
                std::vector<std::string> heal = {},
                std::chrono::milliseconds limit = std::chrono::seconds(60))
      : name_(std::move(name)), inject_(std::move(inject)), heal_(std::move(heal)), limit_(limit) {
    if (!inject_) throw std::invalid_argument("noclobber::posix::command_fault: needs an inject command");
  }
  [[nodiscard]] std::string name() const override { return name_; }

  std::string inject(std::uint64_t random) override {
    const std::vector<std::string> argv = inject_(random);
    {
      annotated_lock lock(mutex_);
      pending_ = true;
    }
    std::string out = run_checked(argv, limit_);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return argv.front() + (out.empty() ? "" : ": " + out.substr(0, 200));
  }

  std::string heal() override {
    {
      annotated_lock lock(mutex_);
      if (!pending_ || heal_.empty()) return "nothing to heal";
    }
    (void)run_checked(heal_, limit_);  // throws: still pending, the final heal tries again
    annotated_lock lock(mutex_);
    pending_ = false;
    return "ran " + heal_.front();
  }

 private:
  std::string name_;
  std::function<std::vector<std::string>(std::uint64_t)> inject_;
  std::vector<std::string> heal_;
  std::chrono::milliseconds limit_;
  annotated_mutex mutex_;
  bool pending_ NOCLOBBER_GUARDED_BY(mutex_) = false;
};

}  // namespace noclobber::posix
