// ServerMetrics: the exposition format line by line, and GET /metrics of a real server whose
// counters move while a sweep runs over gRPC on 127.0.0.1 port 0.
#include "server/server_metrics.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using ::testing::HasSubstr;

// A parsed exposition: every sample by its full series text ("name{labels}"), after checking
// each line against the 0.0.4 grammar. Failures are reported through gtest.
struct Exposition {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // metric family -> counter|gauge|histogram
};

Exposition ParseExposition(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")"
      R"((?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? ([-+0-9.eE]+|\+Inf|NaN))");
  Exposition exposition;
  std::set<std::string> helped;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "the exposition ends with a newline";
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch match;
    if (std::regex_match(line, match, kHelp)) {
      EXPECT_TRUE(helped.insert(match[1]).second) << "HELP twice: " << line;
    } else if (std::regex_match(line, match, kType)) {
      EXPECT_TRUE(helped.count(match[1])) << "TYPE before HELP: " << line;
      EXPECT_TRUE(exposition.types.emplace(match[1], match[2]).second) << "TYPE twice: " << line;
    } else if (std::regex_match(line, match, kSample)) {
      std::string family = match[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string base = family.substr(0, family.size() - std::strlen(suffix));
        if (family.ends_with(suffix) && exposition.types.count(base) &&
            exposition.types[base] == "histogram") {
          family = base;
        }
      }
      EXPECT_TRUE(exposition.types.count(family)) << "sample without TYPE: " << line;
      const std::string value = match[3];
      exposition.samples[match[1].str() + match[2].str()] =
          value == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(value);
    } else {
      ADD_FAILURE() << "not an exposition line: '" << line << "'";
    }
  }
  return exposition;
}

TEST(ServerMetricsTest, Render_IsValidExpositionWithCumulativeHistogram) {
  ServerMetrics metrics;
  metrics.RecordRpc("/bitsweep.v1.SweepService/GetSweep", "OK", 0.0005);
  metrics.RecordRpc("/bitsweep.v1.SweepService/GetSweep", "OK", 0.02);
  metrics.RecordRpc("/bitsweep.v1.SweepService/GetSweep", "NOT_FOUND", 30.0);
  metrics.AddCurvePoints(7);
  metrics.AddExpiredLeases(2);
  MetricsSnapshot snapshot;
  snapshot.trials_by_state = {{"queued", 3}, {"running", 1}};
  snapshot.sweeps_by_state = {{"running", 1}};
  snapshot.workers_alive = 1;
  snapshot.workers_registered = 2;

  Exposition exposition = ParseExposition(metrics.Render(snapshot));
  const std::string get = R"(method="/bitsweep.v1.SweepService/GetSweep")";
  EXPECT_EQ(exposition.types["bitsweep_grpc_request_duration_seconds"], "histogram");
  EXPECT_EQ(exposition.types["bitsweep_grpc_requests_total"], "counter");
  EXPECT_EQ(exposition.samples["bitsweep_grpc_requests_total{" + get + R"(,code="OK"})"], 2);
  EXPECT_EQ(exposition.samples["bitsweep_grpc_requests_total{" + get + R"(,code="NOT_FOUND"})"], 1);
  EXPECT_EQ(
      exposition
          .samples["bitsweep_grpc_request_duration_seconds_bucket{" + get + R"(,le="0.001"})"],
      1);
  EXPECT_EQ(
      exposition
          .samples["bitsweep_grpc_request_duration_seconds_bucket{" + get + R"(,le="0.025"})"],
      2);
  EXPECT_EQ(
      exposition.samples["bitsweep_grpc_request_duration_seconds_bucket{" + get + R"(,le="10"})"],
      2);
  EXPECT_EQ(
      exposition.samples["bitsweep_grpc_request_duration_seconds_bucket{" + get + R"(,le="+Inf"})"],
      3);
  EXPECT_EQ(exposition.samples["bitsweep_grpc_request_duration_seconds_count{" + get + "}"], 3);
  EXPECT_NEAR(exposition.samples["bitsweep_grpc_request_duration_seconds_sum{" + get + "}"],
              30.0205, 1e-9);
  EXPECT_EQ(exposition.samples["bitsweep_curve_points_ingested_total"], 7);
  EXPECT_EQ(exposition.samples["bitsweep_leases_expired_total"], 2);
  EXPECT_EQ(exposition.samples[R"(bitsweep_trials{state="queued"})"], 3);
  EXPECT_EQ(exposition.samples["bitsweep_queue_depth"], 3);
  EXPECT_EQ(exposition.samples["bitsweep_workers_alive"], 1);
  EXPECT_EQ(exposition.samples["bitsweep_workers_registered"], 2);
}

TEST(ServerMetricsTest, Render_EscapesLabelValues) {
  ServerMetrics metrics;
  metrics.RecordRpc("/odd\"method\\\n", "OK", 0.1);
  const std::string text = metrics.Render(MetricsSnapshot());
  EXPECT_THAT(text, HasSubstr(R"(method="/odd\"method\\\n")"));
  ParseExposition(text);
}

v1::SweepSpec TwoTrialSweep(const std::string& name) {
  v1::SweepSpec spec;
  spec.set_name(name);
  v1::SweepParameter* parameter = spec.add_parameters();
  parameter->set_path("train.batch_size");
  parameter->mutable_values()->add_values()->set_number_value(32);
  parameter->mutable_values()->add_values()->set_number_value(64);
  return spec;
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    options.db_path = dir_.File("metrics.db");
    options.clock = &clock_;
    ASSERT_TRUE(server_.Start(options).ok());
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.grpc_port()),
                                       grpc::InsecureChannelCredentials());
    sweeps_ = v1::SweepService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", server_.http_port());
  }

  Exposition Scrape() {
    auto result = http_->Get("/metrics");
    EXPECT_TRUE(result);
    if (!result) return {};
    EXPECT_EQ(result->status, 200);
    EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("version=0.0.4"));
    return ParseExposition(result->body);
  }

  void Submit(const v1::SweepSpec& spec) {
    grpc::ClientContext context;
    v1::SubmitSweepRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitSweepResponse response;
    ASSERT_TRUE(sweeps_->SubmitSweep(&context, request, &response).ok());
  }

  v1::TrialRef Lease() {
    grpc::ClientContext context;
    v1::LeaseTrialRequest request;
    request.set_worker_id("w1");
    request.set_incarnation("inc");
    v1::LeaseTrialResponse response;
    EXPECT_TRUE(workers_->LeaseTrial(&context, request, &response).ok());
    EXPECT_TRUE(response.has_trial());
    return response.ref();
  }

  void ReportAndComplete(const v1::TrialRef& ref, int points) {
    {
      grpc::ClientContext context;
      v1::ReportProgressRequest request;
      request.set_worker_id("w1");
      *request.mutable_ref() = ref;
      for (int i = 1; i <= points; ++i) request.add_points()->set_iteration(10 * i);
      v1::ReportProgressResponse response;
      ASSERT_TRUE(workers_->ReportProgress(&context, request, &response).ok());
    }
    grpc::ClientContext context;
    v1::CompleteTrialRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = ref;
    request.mutable_result()->set_final_test_accuracy(0.5);
    v1::CompleteTrialResponse response;
    ASSERT_TRUE(workers_->CompleteTrial(&context, request, &response).ok());
  }

  testing::TempDir dir_;
  common::FakeClock clock_;
  Server server_;
  std::unique_ptr<v1::SweepService::Stub> sweeps_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(MetricsEndpointTest, CountersAndGauges_MoveAsASweepRuns) {
  Exposition before = Scrape();
  EXPECT_EQ(before.samples[R"(bitsweep_trials{state="queued"})"], 0);
  EXPECT_EQ(before.samples["bitsweep_curve_points_ingested_total"], 0);

  Submit(TwoTrialSweep("metrics"));
  Exposition queued = Scrape();
  EXPECT_EQ(queued.samples[R"(bitsweep_trials{state="queued"})"], 2);
  EXPECT_EQ(queued.samples["bitsweep_queue_depth"], 2);
  EXPECT_EQ(queued.samples[R"(bitsweep_sweeps{state="queued"})"], 1);

  {
    grpc::ClientContext context;
    v1::RegisterWorkerRequest request;
    request.set_worker_id("w1");
    request.set_incarnation("inc");
    request.set_slots(1);
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(workers_->RegisterWorker(&context, request, &response).ok());
  }
  ReportAndComplete(Lease(), 3);
  // The second trial's worker goes silent: its lease expires and it is requeued.
  Lease();
  clock_.AdvanceMs(16'000);
  ASSERT_EQ(*server_.scheduler()->ExpireLeases(), 1);

  Exposition after = Scrape();
  EXPECT_EQ(after.samples[R"(bitsweep_trials{state="done"})"], 1);
  EXPECT_EQ(after.samples[R"(bitsweep_trials{state="queued"})"], 1);
  EXPECT_EQ(after.samples["bitsweep_curve_points_ingested_total"], 3);
  EXPECT_EQ(after.samples["bitsweep_leases_expired_total"], 1);
  EXPECT_EQ(after.samples["bitsweep_workers_registered"], 1);
  EXPECT_EQ(after.samples["bitsweep_workers_alive"], 0);  // 16 s without a heartbeat
  const std::string lease = R"(method="/bitsweep.v1.WorkerService/LeaseTrial")";
  EXPECT_EQ(after.samples["bitsweep_grpc_requests_total{" + lease + R"(,code="OK"})"], 2);
  EXPECT_EQ(after.samples["bitsweep_grpc_request_duration_seconds_count{" + lease + "}"], 2);
  const std::string submit = R"(method="/bitsweep.v1.SweepService/SubmitSweep")";
  EXPECT_EQ(after.samples["bitsweep_grpc_requests_total{" + submit + R"(,code="OK"})"], 1);
  EXPECT_EQ(server_.metrics().rpc_count("/bitsweep.v1.WorkerService/CompleteTrial"), 1);
}

}  // namespace
}  // namespace bitsweep::server
