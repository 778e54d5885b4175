// A cluster started by one of scripts/clusters/*.sh for the length of a test: `start` runs in
// the constructor (its `export NAME=VALUE` lines are kept), `stop` in the destructor — also
// when the test fails. Should the test process die first, scripts/clusters/sweep.sh removes it.
#pragma once

#include <noclobber/race_harness/posix/process.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#ifndef NOCLOBBER_SOURCE_DIR
#error "NOCLOBBER_SOURCE_DIR must name the source tree (tests/faults/CMakeLists.txt sets it)"
#endif

namespace nc_faults {

inline std::string script_path(const std::string& name) {
  return std::string(NOCLOBBER_SOURCE_DIR) + "/scripts/clusters/" + name;
}

class cluster {
 public:
  /// Runs `scripts/clusters/<script> start <args...>`; FAILs the test with its output when it fails.
  explicit cluster(std::string script, std::vector<std::string> args = {}) : script_(script_path(script)) {
    std::vector<std::string> argv{"bash", script_, "start"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = noclobber::posix::run_command(argv, std::chrono::seconds(90));
    parse(r.output);
    if (!r.ok()) {
      stop();
      FAIL(script << " start failed (exit " << r.status << "):\n" << r.output);
    }
    state_ = env("NOCLOBBER_CLUSTER_STATE");
  }
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;
  ~cluster() { stop(); }

  /// A variable the start command exported; FAILs when it did not.
  [[nodiscard]] std::string env(const std::string& name) const {
    auto it = env_.find(name);
    if (it == env_.end()) FAIL(script_ << " start did not export " << name);
    return it->second;
  }
  [[nodiscard]] const std::string& state() const noexcept { return state_; }

  /// The argv of `<script> <command> <state> <args...>` (for kill_fault's restart, command_fault).
  [[nodiscard]] std::vector<std::string> command(const std::string& cmd,
                                                 std::vector<std::string> args = {}) const {
    std::vector<std::string> argv{"bash", script_, cmd, state_};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  /// Runs it; throws std::runtime_error with its output unless it exits 0. Returns the output,
  /// trailing newline removed.
  std::string run(const std::string& cmd, std::vector<std::string> args = {},
                  std::chrono::milliseconds limit = std::chrono::seconds(60)) const {
    std::string out = noclobber::posix::run_checked(command(cmd, std::move(args)), limit);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    std::string st = state_;
    if (st.empty()) {
      auto it = env_.find("NOCLOBBER_CLUSTER_STATE");
      if (it == env_.end()) return;
      st = it->second;
    }
    (void)noclobber::posix::run_command({"bash", script_, "stop", st}, std::chrono::seconds(60));
  }

 private:
  void parse(const std::string& out) {
    std::size_t pos = 0;
    while (pos < out.size()) {
      std::size_t eol = out.find('\n', pos);
      if (eol == std::string::npos) eol = out.size();
      std::string line = out.substr(pos, eol - pos);
      pos = eol + 1;
      if (!line.starts_with("export ")) continue;
      const auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string value = line.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'')
        value = value.substr(1, value.size() - 2);
      env_[line.substr(7, eq - 7)] = value;
    }
  }

  std::string script_;
  std::string state_;
  std::map<std::string, std::string> env_;
  bool stopped_ = false;
};

}  // namespace nc_faults
