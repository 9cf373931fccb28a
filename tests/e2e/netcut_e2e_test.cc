// Network cut (issue 4): a worker in its own network namespace, joined to the server's by a
// veth pair (netns_fixture.h), loses its link in the middle of a trial. Its trial is requeued
// after the lease and finishes on the other worker; when the link returns, the cut worker's
// late reports are refused and it rejoins. The server listens beyond loopback, so tokens are
// required; the test reaches it through the CLI run inside the server's namespace. Skips where
// namespaces cannot be made.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/e2e/cluster.h"
#include "tests/e2e/netns_fixture.h"

namespace bitsweep::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

void WriteSecret(const fs::path& path) {
  std::random_device device;
  std::string token;
  for (int i = 0; i < 32; ++i) token += "0123456789abcdef"[device() % 16];
  std::ofstream(path) << token << "\n";
  chmod(path.c_str(), 0600);
}

constexpr char kSweepYaml[] = R"(name: netcut
base:
  kind: simulated
  simulation: {points: 60, millis_per_point: 50}
  dataset: {name: synthetic}
  train: {eval_every: 10, iterations: 600}
  precision:
    default: {format: "mask:12"}
sweep:
  method: grid
  seeds: 2
  parameters:
    precision.default.rounding: [stochastic]
)";

class NetworkCutE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = NetnsTopology::SkipReason(); !reason.empty()) {
      GTEST_SKIP() << "network namespaces cannot be made here: " << reason;
    }
    absl::StatusOr<std::unique_ptr<NetnsTopology>> net = NetnsTopology::Create(2);
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = std::move(*net);
    absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Create();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }
  void TearDown() override {
    if (cluster_ && HasFailure()) cluster_->DumpLogs();
    cluster_.reset();  // the processes first, then their namespaces
    net_.reset();
  }

  fs::path Token(const std::string& name) { return cluster_->dir() / (name + ".token"); }

  // `bitsweep ARGS... --json` inside the server's namespace; null JSON on any failure.
  nlohmann::json CliJson(std::vector<std::string> args, const std::string& label) {
    args.insert(args.begin(), {BITSWEEP_CLI_BIN, "--server", cluster_->server_address(),
                               "--token-file", Token("client").string()});
    args.push_back("--json");
    const CommandResult result =
        RunCommand(net_->Wrap(0, std::move(args)), cluster_->dir(), label, seconds(30));
    if (result.exit_code != 0) return nullptr;
    nlohmann::json parsed = nlohmann::json::parse(result.out, nullptr, false);
    return parsed.is_discarded() ? nullptr : parsed;
  }

  nlohmann::json SweepCounts(int64_t sweep_id) {
    const nlohmann::json status = CliJson({"status", std::to_string(sweep_id)}, "cli-status");
    return status.is_object() && status.contains("counts") ? status["counts"] : nullptr;
  }

  std::unique_ptr<NetnsTopology> net_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(NetworkCutE2ETest, WorkerCutOff_TrialRequeuedAfterLeaseLateReportsRefusedWorkerRejoins) {
  WriteSecret(Token("worker"));
  WriteSecret(Token("client"));
  ASSERT_TRUE(cluster_
                  ->StartServer({"--lease-timeout-ms", "2000", "--checkpoint-every", "2",
                                 "--worker-token-file", Token("worker").string(),
                                 "--client-token-file", Token("client").string()},
                                net_->address(0) + ":0", net_->Wrap(0, {}))
                  .ok());
  const std::vector<std::string> token = {"--token-file", Token("worker").string()};
  ChildProcess* near = cluster_->StartWorker("near", 1, token, net_->Wrap(0, {}));
  ChildProcess* cut = cluster_->StartWorker("cut", 1, token, net_->Wrap(1, {}));
  ASSERT_NE(near, nullptr);
  ASSERT_NE(cut, nullptr);

  const fs::path yaml = cluster_->dir() / "netcut.yaml";
  std::ofstream(yaml) << kSweepYaml;
  const CommandResult submit =
      RunCommand(net_->Wrap(0, {BITSWEEP_CLI_BIN, "--server", cluster_->server_address(),
                                "--token-file", Token("client").string(), "submit", yaml.string()}),
                 cluster_->dir(), "cli-submit", seconds(30));
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  const size_t at = submit.out.find("submitted sweep ");
  ASSERT_NE(at, std::string::npos) << submit.out;
  const int64_t sweep_id = std::atoll(submit.out.c_str() + at + 16);

  // Both trials running: one on each worker (one slot each).
  ASSERT_TRUE(Cluster::WaitUntil(
      [&] {
        const nlohmann::json counts = SweepCounts(sweep_id);
        return counts.is_object() && counts["running"] == 2;
      },
      seconds(30)))
      << "the two workers never ran at once";
  ASSERT_TRUE(net_->SetLinkUp(1, false).ok());

  // The cut worker's trial is requeued after its lease and leased again (attempt 2).
  ASSERT_TRUE(Cluster::WaitUntil(
      [&] {
        const nlohmann::json trials = CliJson({"results", std::to_string(sweep_id)}, "cli-results");
        if (!trials.is_array()) return false;
        for (const nlohmann::json& trial : trials) {
          if (trial["attempt"].get<int>() >= 2) return true;
        }
        return false;
      },
      seconds(40)))
      << "the cut worker's trial was not requeued";
  ASSERT_TRUE(net_->SetLinkUp(1, true).ok());

  ASSERT_TRUE(Cluster::WaitUntil(
      [&] {
        const nlohmann::json counts = SweepCounts(sweep_id);
        return counts.is_object() && counts["done"] == 2;
      },
      seconds(45)))
      << "the sweep did not finish";
  const nlohmann::json trials = CliJson({"results", std::to_string(sweep_id)}, "cli-results");
  ASSERT_TRUE(trials.is_array());
  int requeued = 0;
  for (const nlohmann::json& trial : trials) {
    EXPECT_EQ(trial["state"].get<std::string>(), "done") << trial.dump();
    requeued += trial["attempt"].get<int>() == 2 ? 1 : 0;
  }
  EXPECT_EQ(requeued, 1);

  // Late reports of the cut worker are refused (fencing), and it comes back.
  EXPECT_TRUE(Cluster::WaitUntil(
      [&] { return ReadFile(cut->stderr_path()).find("FAILED_PRECONDITION") != std::string::npos; },
      seconds(30)))
      << "the cut worker's late report was not refused";
  EXPECT_TRUE(Cluster::WaitUntil(
      [&] {
        const nlohmann::json workers = CliJson({"workers"}, "cli-workers");
        if (!workers.is_array()) return false;
        for (const nlohmann::json& worker : workers) {
          if (worker["id"] == "cut" && worker["alive"] == true) return true;
        }
        return false;
      },
      seconds(30)))
      << "the cut worker did not rejoin";
  EXPECT_FALSE(cut->Exited());
  EXPECT_FALSE(near->Exited());
}

}  // namespace
}  // namespace bitsweep::e2e
