// Across machines, as far as one machine allows: bitsweep-server and two bitsweep-workers each in
// a network namespace of their own (tests/e2e/netns_fixture.h), talking over a bridge on
// non-loopback addresses, set up as README "Scaling out" says: tokens (required beyond
// loopback) and TLS with a certificate for the server's address. A sweep is submitted, watched and
// exported with the `bitsweep` CLI from the first worker's host; both workers must have run
// trials and every result must be stored. Skipped where network namespaces cannot be made.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/child_process.h"
#include "tests/e2e/netns_fixture.h"

namespace bitsweep::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kServerHost = 0;
constexpr int kWorkers = 2;
constexpr auto kStartupTimeout = seconds(30);
constexpr auto kSweepTimeout = seconds(180);

// Two formats x three seeds of a tiny CNN on synthetic data: six short trials, enough for both
// one-slot workers to take some.
constexpr int kTrials = 6;
constexpr char kSweepYaml[] = R"(name: multihost
base:
  dataset: {name: synthetic, train_limit: 1000, test_limit: 300}
  model: {conv: [4], kernel: 3, pool: 2, dense: [16], activation: relu, init: he}
  train: {iterations: 150, batch_size: 16, optimizer: sgd, lr: 0.05, eval_every: 50}
  precision:
    default: {format: fp32, rounding: nearest}
    sites: [weights, activations, errors]
sweep:
  method: grid
  seeds: 3
  parameters:
    precision.default.format: [fp32, "mask:12"]
)";

std::string RandomToken() {
  std::random_device random;
  std::string token;
  for (int i = 0; i < 32; ++i) token += "0123456789abcdef"[random() % 16];
  return token;
}

void WriteSecret(const fs::path& path, const std::string& contents) {
  std::ofstream(path) << contents << "\n";
  chmod(path.c_str(), 0600);
}

std::string OpensslPath() {
  for (const char* path : {"/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string reason = NetnsTopology::SkipReason(); !reason.empty()) {
      GTEST_SKIP() << "multi-host test skipped: " << reason;
    }
    for (const char* bin : {BITSWEEP_SERVER_BIN, BITSWEEP_WORKER_BIN, BITSWEEP_CLI_BIN}) {
      ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
    }
    std::string pattern = (fs::temp_directory_path() / "bitsweep-multihost-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;

    absl::StatusOr<std::unique_ptr<NetnsTopology>> topology = NetnsTopology::Create(1 + kWorkers);
    ASSERT_TRUE(topology.ok()) << topology.status();
    net_ = *std::move(topology);
  }

  void TearDown() override {
    // Workers first, so that they do not spin on a dead server; every child is reaped before
    // its namespace goes.
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) it->Stop(seconds(10));
    const bool keep = HasFailure() || std::getenv("BITSWEEP_E2E_KEEP") != nullptr;
    if (HasFailure()) {
      for (ChildProcess& child : children_) {
        std::cerr << "---- stderr of " << child.stderr_path().filename() << ":\n"
                  << ReadFile(child.stderr_path()) << "\n";
      }
    }
    children_.clear();
    net_.reset();
    if (keep && !dir_.empty()) std::cerr << "---- multihost temp dir kept: " << dir_ << "\n";
    if (!keep && !dir_.empty()) fs::remove_all(dir_);
  }

  ChildProcess* Spawn(int host, std::vector<std::string> argv, const std::string& label) {
    std::string error;
    std::optional<ChildProcess> child =
        ChildProcess::Start(net_->Wrap(host, std::move(argv)), dir_ / (label + ".out"),
                            dir_ / (label + ".err"), &error);
    if (!child) {
      ADD_FAILURE() << error;
      return nullptr;
    }
    children_.push_back(std::move(*child));
    return &children_.back();
  }

  // Starts the server on its host's address (port 0) and waits for its port file.
  void StartServer() {
    const fs::path port_file = dir_ / "ports.json";
    const int inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    ASSERT_GE(inotify, 0);
    ASSERT_GE(inotify_add_watch(inotify, dir_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE), 0);
    ChildProcess* server = Spawn(
        kServerHost,
        {BITSWEEP_SERVER_BIN, "--listen", net_->address(kServerHost) + ":0", "--http",
         "127.0.0.1:0", "--db", (dir_ / "bitsweep.db").string(), "--port-file", port_file.string(),
         "--worker-token-file", (dir_ / "worker.token").string(), "--client-token-file",
         (dir_ / "client.token").string(), "--tls-cert", (dir_ / "server.pem").string(),
         "--tls-key", (dir_ / "server.key").string(), "--lease-timeout-ms", "5000"},
        "server");
    ASSERT_NE(server, nullptr);
    const auto deadline = std::chrono::steady_clock::now() + kStartupTimeout;
    while (!fs::exists(port_file)) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      ASSERT_GT(left.count(), 0) << "bitsweep-server wrote no port file within "
                                 << kStartupTimeout.count() << "s";
      pollfd fds[2] = {{inotify, POLLIN, 0}, {server->exit_fd(), POLLIN, 0}};
      poll(fds, server->exit_fd() >= 0 ? 2 : 1, static_cast<int>(left.count()));
      char buffer[4096];
      while (read(inotify, buffer, sizeof(buffer)) > 0) {
      }
      ASSERT_FALSE(server->Exited()) << "bitsweep-server exited during start-up:\n"
                                     << ReadFile(server->stderr_path());
    }
    close(inotify);
    const nlohmann::json ports = nlohmann::json::parse(ReadFile(port_file), nullptr, false);
    ASSERT_TRUE(!ports.is_discarded() && ports.contains("grpc_port")) << ReadFile(port_file);
    server_address_ =
        net_->address(kServerHost) + ":" + std::to_string(ports["grpc_port"].get<int>());
  }

  // A small CA and a server certificate for the server host's address, as docs/security.md
  // makes them (the address workers dial must be in the subjectAltName).
  void MakeCertificates() {
    const std::string openssl = OpensslPath();
    ASSERT_FALSE(openssl.empty()) << "openssl is not installed (scripts/debian-packages.txt)";
    const std::string d = dir_.string() + "/";
    std::ofstream(dir_ / "server.ext")
        << "subjectAltName=IP:" << net_->address(kServerHost) << "\nextendedKeyUsage=serverAuth\n";
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-days", "2", "-keyout", d + "ca.key", "-out", d + "ca.pem", "-subj",
              "/CN=bitsweep-test-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
              "keyUsage=keyCertSign"},
             {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", d + "server.key", "-out", d + "server.csr", "-subj", "/CN=coordinator"},
             {"x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.pem", "-CAkey", d + "ca.key",
              "-CAcreateserial", "-days", "2", "-out", d + "server.pem", "-extfile",
              d + "server.ext"}}) {
      std::vector<std::string> argv = {openssl};
      argv.insert(argv.end(), args.begin(), args.end());
      const CommandResult made = RunCommand(argv, dir_, "openssl");
      ASSERT_EQ(made.exit_code, 0) << made.err;
    }
  }

  // `bitsweep --server ADDRESS --token-file client.token --tls-ca ca.pem ARGS...` on `host`.
  CommandResult Cli(int host, std::vector<std::string> args, const std::string& label,
                    milliseconds timeout = seconds(60)) {
    args.insert(args.begin(),
                {BITSWEEP_CLI_BIN, "--server", server_address_, "--token-file",
                 (dir_ / "client.token").string(), "--tls-ca", (dir_ / "ca.pem").string()});
    return RunCommand(net_->Wrap(host, std::move(args)), dir_, label, timeout);
  }

  fs::path dir_;
  std::unique_ptr<NetnsTopology> net_;
  std::vector<ChildProcess> children_;
  std::string server_address_;
};

TEST_F(MultiHostTest, SweepAcrossTwoWorkerHosts_BothRunTrialsAndEveryResultIsStored) {
  const auto start = std::chrono::steady_clock::now();
  WriteSecret(dir_ / "worker.token", RandomToken());
  WriteSecret(dir_ / "client.token", RandomToken());
  MakeCertificates();
  ASSERT_FALSE(HasFatalFailure());
  StartServer();
  ASSERT_FALSE(HasFatalFailure());

  std::set<std::string> worker_ids;
  for (int host = 1; host <= kWorkers; ++host) {
    const std::string id = "host" + std::to_string(host) + "-worker";
    ASSERT_NE(Spawn(host,
                    {BITSWEEP_WORKER_BIN, "--server", server_address_, "--token-file",
                     (dir_ / "worker.token").string(), "--tls-ca", (dir_ / "ca.pem").string(),
                     "--slots", "1", "--data-dir", dir_.string(), "--worker-id", id},
                    id),
              nullptr);
    worker_ids.insert(id);
  }

  // Non-loopback without the client token: refused, and the CLI says so with exit code 2.
  const CommandResult anonymous =
      RunCommand(net_->Wrap(1, {BITSWEEP_CLI_BIN, "--server", server_address_, "--tls-ca",
                                (dir_ / "ca.pem").string(), "ls"}),
                 dir_, "cli-anon");
  EXPECT_EQ(anonymous.exit_code, 2) << anonymous.out << anonymous.err;
  // Plaintext against the TLS port: unreachable, exit code 3.
  const CommandResult plaintext =
      RunCommand(net_->Wrap(1, {BITSWEEP_CLI_BIN, "--server", server_address_, "--token-file",
                                (dir_ / "client.token").string(), "ls"}),
                 dir_, "cli-plaintext");
  EXPECT_EQ(plaintext.exit_code, 3) << plaintext.out << plaintext.err;

  const fs::path yaml = dir_ / "sweep.yaml";
  std::ofstream(yaml) << kSweepYaml;
  const CommandResult submit = Cli(1, {"submit", yaml.string()}, "cli-submit");
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  const std::string marker = "submitted sweep ";
  const size_t at = submit.out.find(marker);
  ASSERT_NE(at, std::string::npos) << submit.out;
  const std::string sweep_id = std::to_string(std::atoll(submit.out.c_str() + at + marker.size()));

  const CommandResult watch = Cli(1, {"watch", sweep_id}, "cli-watch",
                                  std::chrono::duration_cast<milliseconds>(kSweepTimeout));
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;

  // From the other worker host too: every trial stored, done, with a worker and a result.
  const CommandResult exported = Cli(2, {"export", sweep_id, "--format", "json"}, "cli-export");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const nlohmann::json rows = nlohmann::json::parse(exported.out, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << exported.out;
  EXPECT_EQ(static_cast<int>(rows.size()), kTrials);
  std::map<std::string, int> trials_by_worker;
  for (const nlohmann::json& row : rows) {
    EXPECT_EQ(row.value("state", ""), "done") << row.dump();
    ASSERT_TRUE(row.contains("final_test_accuracy") && row["final_test_accuracy"].is_number())
        << row.dump();
    EXPECT_GE(row["final_test_accuracy"].get<double>(), 0.0);
    EXPECT_LE(row["final_test_accuracy"].get<double>(), 1.0);
    ASSERT_TRUE(row.contains("worker") && row["worker"].is_string()) << row.dump();
    ++trials_by_worker[row["worker"].get<std::string>()];
  }
  std::set<std::string> ran_on;
  for (const auto& [worker, count] : trials_by_worker) ran_on.insert(worker);
  EXPECT_EQ(ran_on, worker_ids) << "both worker hosts should have run trials";

  // The server saw each worker from its own host's address.
  const CommandResult workers = Cli(2, {"workers", "--json"}, "cli-workers");
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  const nlohmann::json listed = nlohmann::json::parse(workers.out, nullptr, false);
  ASSERT_TRUE(listed.is_array()) << workers.out;
  EXPECT_EQ(static_cast<int>(listed.size()), kWorkers) << workers.out;

  std::cerr << "multi-host sweep of " << kTrials << " trials over " << kWorkers
            << " worker namespaces took "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << "s\n";
}

// The fixture itself: addresses are distinct and inside the test subnet, a cut link can be
// restored, and bad hosts are refused.
TEST(NetnsTopologyTest, Create_GivesEachHostItsOwnNamespaceAndAddress) {
  if (const std::string reason = NetnsTopology::SkipReason(); !reason.empty()) {
    GTEST_SKIP() << reason;
  }
  std::string ns_name;
  {
    absl::StatusOr<std::unique_ptr<NetnsTopology>> net = NetnsTopology::Create(3);
    ASSERT_TRUE(net.ok()) << net.status();
    std::set<std::string> addresses, namespaces;
    for (int host = 0; host < 3; ++host) {
      addresses.insert((*net)->address(host));
      namespaces.insert((*net)->ns(host));
      EXPECT_EQ((*net)->address(host).rfind("10.77.", 0), 0u) << (*net)->address(host);
      EXPECT_TRUE(fs::exists(fs::path("/run/netns") / (*net)->ns(host))) << (*net)->ns(host);
    }
    EXPECT_EQ(addresses.size(), 3u);
    EXPECT_EQ(namespaces.size(), 3u);
    EXPECT_TRUE((*net)->SetLinkUp(1, false).ok());
    EXPECT_TRUE((*net)->SetLinkUp(1, true).ok());
    EXPECT_FALSE((*net)->SetLinkUp(3, false).ok());
    const std::vector<std::string> wrapped = (*net)->Wrap(2, {"true"});
    ASSERT_EQ(wrapped.size(), 5u);
    EXPECT_EQ(wrapped[3], (*net)->ns(2));
    EXPECT_EQ(wrapped[4], "true");
    ns_name = (*net)->ns(0);
  }
  EXPECT_FALSE(fs::exists(fs::path("/run/netns") / ns_name)) << "namespace left behind";
  EXPECT_FALSE(NetnsTopology::Create(0).ok());
}

}  // namespace
}  // namespace bitsweep::e2e
