// noclobber/race_harness/posix/network.hpp — nemesis actions on the network (Linux): cut a
// cluster member off, inside the network namespaces the test created.
//
// Overview
// --------
// A cluster for network faults runs each member in its own network namespace, joined by veth
// pairs to a bridge (scripts/clusters/common.sh creates them, with a name prefix a sweep can find
// after a crash). `partition_fault` cuts one member off, picked with the schedule's random
// number or by your own function (say, "the current leader"):
//
//   cut::from_peers     nftables rules in the member's namespace drop its traffic to and from
//                       the other members; clients (the bridge's own address) still reach it —
//                       the split brain where a minority member still answers clients;
//   cut::from_everyone  nftables rules drop everything but loopback: clients too;
//   cut::link_down      the member's interface is taken down.
//
// heal() removes the rules (one nftables table, `inet noclobber_nemesis`) or brings the link up
// again, in every namespace the action ever touched; it is idempotent. Everything stays inside
// the namespaces: no rule is added to the machine's own namespace. tc netem is not used (many
// kernels lack it); latency goes through a TCP proxy instead (see docs/faults.md).
//
// Needs root (CAP_NET_ADMIN), `ip` (iproute2) and `nft` (nftables).
//
// Thread safety: as the process actions (process.hpp): one nemesis drives an action; its state
// is under its own mutex, released while commands run.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "noclobber/race_harness/nemesis.hpp"
#include "noclobber/race_harness/posix/process.hpp"
#include "noclobber/thread_annotations.hpp"

namespace noclobber::posix {

/// A cluster member inside its own network namespace.
struct netns_member {
  std::string netns;    ///< the namespace's name (ip netns)
  std::string address;  ///< its IPv4 address on the bridge
  std::string label;    ///< for the timeline ("etcd member 2")
  std::string device = "eth0";
};

/// How a member is cut off.
enum class cut : unsigned char { from_peers, from_everyone, link_down };

/// The nftables table the partition rules live in, in the member's namespace.
inline constexpr const char* nemesis_nft_table = "noclobber_nemesis";

/// Cuts one member off; see the overview.
class partition_fault final : public fault_action {
 public:
  /// `pick(random)` chooses the member's index; null: random % members.size().
  partition_fault(std::string name, std::vector<netns_member> members, cut how,
                  std::function<std::size_t(std::uint64_t random)> pick = nullptr)
      : name_(std::move(name)), members_(std::move(members)), how_(how), pick_(std::move(pick)) {
    if (members_.size() < 2)
      throw std::invalid_argument("noclobber::posix::partition_fault: needs two or more members");
    for (const netns_member& m : members_) {
      if (m.netns.empty() || m.address.empty() || m.device.empty()) {
        throw std::invalid_argument(
            "noclobber::posix::partition_fault: a member without a namespace, address or device");
      }
    }
  }
  [[nodiscard]] std::string name() const override { return name_; }

  std::string inject(std::uint64_t random) override {
    const std::size_t i = pick_ ? pick_(random) : static_cast<std::size_t>(random % members_.size());
    if (i >= members_.size()) {
      throw std::out_of_range("noclobber::posix::partition_fault: pick returned " + std::to_string(i) +
                              " of " + std::to_string(members_.size()) + " members");
    }
    const netns_member& m = members_[i];
    {
      annotated_lock lock(mutex_);
      touched_.insert(i);  // before the commands: a half-applied cut is healed too
    }
    if (how_ == cut::link_down) {
      (void)run_checked({"ip", "-n", m.netns, "link", "set", "dev", m.device, "down"});
      return "link down: " + m.label + " (" + m.address + ")";
    }
    std::string drop_in = "iifname != \"lo\" drop";
    std::string drop_out = "oifname != \"lo\" drop";
    if (how_ == cut::from_peers) {
      std::string peers;
      for (std::size_t k = 0; k < members_.size(); ++k) {
        if (k != i) peers += (peers.empty() ? "" : ", ") + members_[k].address;
      }
      drop_in = "ip saddr { " + peers + " } drop";
      drop_out = "ip daddr { " + peers + " } drop";
    }
    const std::string t = std::string("inet ") + nemesis_nft_table;
    (void)run_checked({"ip", "netns", "exec", m.netns, "nft",
                       "add table " + t + "; " + "add chain " + t +
                           " input { type filter hook input priority -10; policy accept; }; " + "add chain " +
                           t + " output { type filter hook output priority -10; policy accept; }; " +
                           "add rule " + t + " input " + drop_in + "; add rule " + t + " output " +
                           drop_out});
    return std::string(how_ == cut::from_peers ? "cut from peers: " : "cut from everyone: ") + m.label +
           " (" + m.address + ")";
  }

  std::string heal() override {
    std::set<std::size_t> touched;
    {
      annotated_lock lock(mutex_);
      touched = touched_;
    }
    if (touched.empty()) return "nothing to heal";
    std::string healed;
    for (std::size_t i : touched) {
      const netns_member& m = members_[i];
      if (how_ == cut::link_down) {
        (void)run_checked({"ip", "-n", m.netns, "link", "set", "dev", m.device, "up"});
      } else {
        // "add" makes "delete" succeed when the table is already gone: idempotent.
        const std::string t = std::string("inet ") + nemesis_nft_table;
        (void)run_checked({"ip", "netns", "exec", m.netns, "nft", "add table " + t + "; delete table " + t});
      }
      healed += (healed.empty() ? "" : ", ") + m.label;
      annotated_lock lock(mutex_);
      touched_.erase(i);
    }
    return "reconnected " + healed;
  }

 private:
  std::string name_;
  std::vector<netns_member> members_;
  cut how_;
  std::function<std::size_t(std::uint64_t)> pick_;
  annotated_mutex mutex_;
  std::set<std::size_t> touched_ NOCLOBBER_GUARDED_BY(mutex_);  // members cut and not yet healed
};

}  // namespace noclobber::posix
