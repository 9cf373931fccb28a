// A private multi-host network for end-to-end tests: `hosts` network namespaces, each with one
// interface (eth0, 10.77.<pid % 250>.<host + 1>/24) joined by veth pairs to a bridge that lives in
// a namespace of its own. Nothing is created in the caller's namespace and no namespace has a
// route anywhere else, so the test network never reaches the machine's real network.
//
// Namespaces are named "bitsweep-<pid>-h<host>" and "bitsweep-<pid>-br"; Create() first removes
// the namespaces of earlier test processes that died without cleaning up (same prefix, pid no
// longer alive), and the destructor removes this topology's namespaces.
//
// Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2's `ip`. Tests call SkipReason() and
// GTEST_SKIP() with it when it is non-empty.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bitsweep::e2e {

class NetnsTopology {
 public:
  // Empty when namespaces can be created here; otherwise why not (not root, no `ip`, a kernel
  // or container that forbids `ip netns add`). Tries once per process and remembers.
  static std::string SkipReason();

  // Builds the namespaces, links and addresses; every link is up.
  // Errors: InvalidArgument (hosts not in 1..200), FailedPrecondition (SkipReason() non-empty),
  // Internal (an `ip` command failed: its stderr is in the message; whatever was made is removed).
  static absl::StatusOr<std::unique_ptr<NetnsTopology>> Create(int hosts);

  NetnsTopology(const NetnsTopology&) = delete;
  NetnsTopology& operator=(const NetnsTopology&) = delete;
  // Deletes the namespaces. Processes still running inside keep their (now unnamed) namespace
  // until they exit: stop them first.
  ~NetnsTopology();

  int hosts() const { return static_cast<int>(namespaces_.size()); }
  // The IPv4 address of `host` (0-based), e.g. "10.77.42.1"; listen on it or connect to it.
  std::string address(int host) const;
  // The namespace name of `host`, for `ip netns exec` / `ip -n`.
  std::string ns(int host) const;
  // Connects (up = true) or cuts (false) `host`'s link at the bridge: while cut, its packets
  // are silently dropped, as with a pulled cable. Errors: InvalidArgument, Internal.
  absl::Status SetLinkUp(int host, bool up);
  // `argv` to run inside `host`'s namespace: {"<path of ip>", "netns", "exec", ns(host), argv...}.
  // `ip netns exec` execs the program itself, so the pid (and signals) are the program's.
  std::vector<std::string> Wrap(int host, std::vector<std::string> argv) const;

 private:
  NetnsTopology(std::string prefix, int subnet) : prefix_(std::move(prefix)), subnet_(subnet) {}
  absl::Status Build(int hosts);
  std::string bridge_ns() const { return prefix_ + "br"; }

  std::string prefix_;  // "bitsweep-<pid>-"
  int subnet_;          // the third octet
  std::vector<std::string> namespaces_;
  std::vector<std::string> created_;  // everything to delete, bridge namespace included
};

}  // namespace bitsweep::e2e
