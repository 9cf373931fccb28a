#include "tests/e2e/netns_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace bitsweep::e2e {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "bitsweep-";

// The path of iproute2's `ip`, or "" when there is none.
std::string IpPath() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) dirs = absl::StrSplit(path, ':', absl::SkipEmpty());
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(dir);
  for (const std::string& dir : dirs) {
    const fs::path candidate = fs::path(dir) / "ip";
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// Runs `ip args...` to completion. Errors: Internal with the command and its output.
absl::Status RunIp(const std::vector<std::string>& args) {
  static const std::string ip = IpPath();
  if (ip.empty()) return absl::FailedPreconditionError("iproute2's `ip` is not installed");
  std::vector<std::string> argv = {ip};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (std::string& arg : argv) raw.push_back(arg.data());
  raw.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, ip.c_str(), &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  std::string output;
  char buffer[1024];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) output.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  const std::string command = absl::StrJoin(argv, " ");
  if (spawned != 0) return absl::InternalError(absl::StrCat("cannot run ", command));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` failed: ", absl::StripAsciiWhitespace(output)));
  }
  return absl::OkStatus();
}

// Removes the namespaces of test processes that died without cleaning up: "bitsweep-<pid>-..."
// whose pid is gone. Best effort.
void RemoveStaleNamespaces() {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator("/run/netns", error)) {
    const std::string name = entry.path().filename().string();
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, kPrefix)) continue;
    const std::vector<std::string> parts = absl::StrSplit(rest, absl::MaxSplits('-', 1));
    int pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    (void)RunIp({"netns", "del", name});
  }
}

std::string ComputeSkipReason() {
  if (geteuid() != 0) return "network namespaces need root (ip netns add); not root here";
  if (IpPath().empty()) return "iproute2's `ip` is not installed (apt-get install iproute2)";
  const std::string probe = absl::StrCat(kPrefix, getpid(), "-probe");
  absl::Status status = RunIp({"netns", "add", probe});
  if (status.ok()) {
    // veth pairs are what the topology is made of: some sandboxes allow namespaces only.
    status = RunIp(
        {"-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1"});
    (void)RunIp({"netns", "del", probe});
  }
  if (!status.ok()) {
    return absl::StrCat("cannot create network namespaces with veth pairs here: ",
                        status.message());
  }
  return "";
}

}  // namespace

std::string NetnsTopology::SkipReason() {
  static std::once_flag once;
  static std::string reason;
  std::call_once(once, [] { reason = ComputeSkipReason(); });
  return reason;
}

absl::StatusOr<std::unique_ptr<NetnsTopology>> NetnsTopology::Create(int hosts) {
  if (hosts < 1 || hosts > 200) {
    return absl::InvalidArgumentError(absl::StrCat("hosts must be in 1..200, not ", hosts));
  }
  if (std::string reason = SkipReason(); !reason.empty()) {
    return absl::FailedPreconditionError(reason);
  }
  RemoveStaleNamespaces();
  // Several topologies may exist at once in one process: a sequence number keeps them apart.
  static std::atomic<int> sequence{0};
  std::unique_ptr<NetnsTopology> topology(new NetnsTopology(
      absl::StrCat(kPrefix, getpid(), "-", sequence.fetch_add(1), "-"), getpid() % 250));
  if (absl::Status status = topology->Build(hosts); !status.ok()) return status;
  return topology;
}

absl::Status NetnsTopology::Build(int hosts) {
  const auto add_namespace = [this](const std::string& name) -> absl::Status {
    // A leftover of an earlier process with the same pid (the pid is alive: it is us).
    if (fs::exists(fs::path("/run/netns") / name)) (void)RunIp({"netns", "del", name});
    absl::Status status = RunIp({"netns", "add", name});
    if (status.ok()) created_.push_back(name);
    return status;
  };
  const std::string bridge = bridge_ns();
  if (absl::Status s = add_namespace(bridge); !s.ok()) return s;
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"-n", bridge, "link", "add", "br0", "type", "bridge"},
                                             {"-n", bridge, "link", "set", "br0", "up"}}) {
    if (absl::Status s = RunIp(args); !s.ok()) return s;
  }
  for (int host = 0; host < hosts; ++host) {
    const std::string name = absl::StrCat(prefix_, "h", host);
    if (absl::Status s = add_namespace(name); !s.ok()) return s;
    namespaces_.push_back(name);
    const std::string port = absl::StrCat("v", host);
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"-n", name, "link", "set", "lo", "up"},
             // Made inside the host namespace, the peer moved straight to the bridge's: no
             // interface ever appears in the caller's namespace.
             {"-n", name, "link", "add", "name", "eth0", "type", "veth", "peer", "name", port,
              "netns", bridge},
             {"-n", bridge, "link", "set", port, "master", "br0"},
             {"-n", bridge, "link", "set", port, "up"},
             {"-n", name, "addr", "add", absl::StrCat(address(host), "/24"), "dev", "eth0"},
             {"-n", name, "link", "set", "eth0", "up"}}) {
      if (absl::Status s = RunIp(args); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

NetnsTopology::~NetnsTopology() {
  // Deleting a namespace destroys its veth ends, and with them their peers on the bridge.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    (void)RunIp({"netns", "del", *it});
  }
}

std::string NetnsTopology::address(int host) const {
  return absl::StrCat("10.77.", subnet_, ".", host + 1);
}

std::string NetnsTopology::ns(int host) const {
  return host >= 0 && host < hosts() ? namespaces_[static_cast<size_t>(host)] : "";
}

absl::Status NetnsTopology::SetLinkUp(int host, bool up) {
  if (host < 0 || host >= hosts()) {
    return absl::InvalidArgumentError(absl::StrCat("no host ", host, " (", hosts(), " hosts)"));
  }
  return RunIp({"-n", bridge_ns(), "link", "set", absl::StrCat("v", host), up ? "up" : "down"});
}

std::vector<std::string> NetnsTopology::Wrap(int host, std::vector<std::string> argv) const {
  std::vector<std::string> wrapped = {IpPath(), "netns", "exec", ns(host)};
  wrapped.insert(wrapped.end(), std::make_move_iterator(argv.begin()),
                 std::make_move_iterator(argv.end()));
  return wrapped;
}

}  // namespace bitsweep::e2e
