// The JSON API and dashboard over real HTTP on 127.0.0.1 port 0.
#include "server/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "nlohmann/json.hpp"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    options.db_path = dir_.File("http.db");
    options.clock = &clock_;
    ASSERT_TRUE(server_.Start(options).ok());
    ASSERT_GT(server_.http_port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_.http_port());
  }

  // Status and parsed JSON body of GET `path`.
  std::pair<int, json> Get(const std::string& path) {
    auto result = client_->Get(path.c_str());
    EXPECT_TRUE(result) << "no response for " << path;
    if (!result) return {0, json()};
    EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("application/json"));
    return {result->status, json::parse(result->body)};
  }

  // A sweep of `n` trials with one leased, completed with a short curve.
  int64_t AddFinishedTrialSweep(int n) {
    v1::SweepSpec spec;
    spec.set_name("http sweep");
    v1::SweepParameter* parameter = spec.add_parameters();
    parameter->set_path("train.batch_size");
    std::vector<PlannedTrial> trials(n);
    for (int i = 0; i < n; ++i) {
      trials[i].config.mutable_train()->set_batch_size(16 << i);
      v1::TrialParam& param = trials[i].params.emplace_back();
      param.set_path("train.batch_size");
      param.set_value(std::to_string(16 << i));
    }
    int64_t id = *server_.store()->CreateSweep(spec, trials, clock_.NowUnixMs());
    EXPECT_TRUE(server_.scheduler()->RegisterWorker({"w1", "inc", "host", 1}).ok());
    auto leased = server_.scheduler()->LeaseTrial("w1", "inc");
    v1::TrialRef ref;
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
    std::vector<v1::CurvePoint> curve(2);
    curve[0].set_iteration(10);
    curve[0].set_test_accuracy(0.4);
    curve[1].set_iteration(20);
    curve[1].set_test_accuracy(0.8);
    EXPECT_TRUE(server_.scheduler()->ReportProgress("w1", ref, curve).ok());
    v1::TrialResult result;
    result.set_final_test_accuracy(0.8);
    result.add_confusion(5);
    EXPECT_TRUE(server_.scheduler()->CompleteTrial("w1", ref, &result, "").ok());
    return id;
  }

  testing::TempDir dir_;
  common::FakeClock clock_;
  Server server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, Healthz_IsOk) {
  auto [status, body] = Get("/healthz");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body["status"], "ok");
}

TEST_F(HttpServerTest, Sweeps_ListAndGetWithCounts) {
  int64_t id = AddFinishedTrialSweep(3);
  auto [status, list] = Get("/api/sweeps");
  EXPECT_EQ(status, 200);
  ASSERT_EQ(list["sweeps"].size(), 1u);
  EXPECT_EQ(list["sweeps"][0]["name"], "http sweep");
  auto [one_status, sweep] = Get("/api/sweeps/" + std::to_string(id));
  EXPECT_EQ(one_status, 200);
  EXPECT_EQ(sweep["state"], "SWEEP_STATE_RUNNING");
  EXPECT_EQ(sweep["counts"]["total"], 3);
  EXPECT_EQ(sweep["counts"]["done"], 1);
  EXPECT_EQ(sweep["counts"]["queued"], 2);
}

TEST_F(HttpServerTest, Trials_ListLeavesOutConfigsAndConfusion) {
  int64_t id = AddFinishedTrialSweep(2);
  auto [status, body] = Get("/api/sweeps/" + std::to_string(id) + "/trials");
  EXPECT_EQ(status, 200);
  ASSERT_EQ(body["trials"].size(), 2u);
  EXPECT_EQ(body["trials"][0]["params"][0]["value"], "16");
  EXPECT_EQ(body["trials"][0]["state"], "TRIAL_STATE_DONE");
  EXPECT_DOUBLE_EQ(body["trials"][0]["result"]["final_test_accuracy"].get<double>(), 0.8);
  EXPECT_TRUE(body["trials"][0]["result"]["confusion"].empty());
}

TEST_F(HttpServerTest, Trial_IncludesCurve) {
  AddFinishedTrialSweep(1);
  auto [status, body] = Get("/api/trials/1");
  EXPECT_EQ(status, 200);
  ASSERT_EQ(body["curve"].size(), 2u);
  EXPECT_EQ(body["curve"][1]["iteration"], "20");  // int64 is a string in proto JSON
  EXPECT_DOUBLE_EQ(body["curve"][1]["test_accuracy"].get<double>(), 0.8);
  EXPECT_EQ(body["trial"]["config"]["train"]["batch_size"], 16);
}

TEST_F(HttpServerTest, TrialCheckpoint_KeptWeightsAreServedAsBytes_NoneIs404NamingTheOption) {
  v1::SweepSpec spec;
  spec.set_name("keep");
  std::vector<PlannedTrial> trials(2);
  for (int i = 0; i < 2; ++i) {
    trials[i].config.set_seed(i);
    trials[i].config.mutable_train()->set_keep_final_checkpoint(i == 0);
  }
  ASSERT_TRUE(server_.store()->CreateSweep(spec, trials, clock_.NowUnixMs()).ok());
  ASSERT_TRUE(server_.scheduler()->RegisterWorker({"w1", "inc", "host", 1}).ok());
  const std::string bytes("ckpt\0\xff bytes", 12);  // binary, with a NUL
  for (int i = 0; i < 2; ++i) {
    auto leased = server_.scheduler()->LeaseTrial("w1", "inc");
    ASSERT_TRUE(leased.ok() && leased->has_value());
    v1::TrialRef ref;
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
    ASSERT_TRUE(server_.store()->StoreCheckpoint("w1", ref, 40, bytes, clock_.NowUnixMs()).ok());
    v1::TrialResult result;
    ASSERT_TRUE(server_.scheduler()->CompleteTrial("w1", ref, &result, "").ok());
  }
  auto kept = client_->Get("/api/trials/1/checkpoint");
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->status, 200);
  EXPECT_EQ(kept->get_header_value("Content-Type"), "application/octet-stream");
  EXPECT_EQ(kept->get_header_value("X-Bitsweep-Iteration"), "40");
  EXPECT_EQ(kept->body, bytes);
  auto [status, error] = Get("/api/trials/2/checkpoint");
  EXPECT_EQ(status, 404);
  EXPECT_THAT(error["error"].get<std::string>(),
              HasSubstr("trial 2 (done) kept no checkpoint: set train.keep_final_checkpoint"));
  EXPECT_EQ(Get("/api/trials/99/checkpoint").first, 404);
  EXPECT_EQ(Get("/api/trials/x/checkpoint").first, 400);
}

TEST_F(HttpServerTest, Predictions_RecordedOnASweepAreListedWithTheirJson) {
  const int64_t id = AddFinishedTrialSweep(1);
  const std::string path = "/api/sweeps/" + std::to_string(id) + "/predictions";
  auto [empty_status, empty] = Get(path);
  EXPECT_EQ(empty_status, 200);
  EXPECT_TRUE(empty["predictions"].empty());
  ASSERT_TRUE(server_.store()
                  ->RecordPrediction(id, 1, "trial 1",
                                     R"({"uniform": {"min_bits": 9}, "bounds": []})", 1234)
                  .ok());
  auto [status, body] = Get(path);
  EXPECT_EQ(status, 200);
  ASSERT_EQ(body["predictions"].size(), 1u);
  const json& p = body["predictions"][0];
  EXPECT_EQ(p["source_trial_id"], 1);
  EXPECT_EQ(p["source"], "trial 1");
  EXPECT_EQ(p["created_unix_ms"], 1234);
  EXPECT_EQ(p["prediction"]["uniform"]["min_bits"], 9);
  EXPECT_EQ(Get("/api/sweeps/99/predictions").first, 404);
}

TEST_F(HttpServerTest, Workers_AreListed) {
  AddFinishedTrialSweep(1);
  auto [status, body] = Get("/api/workers");
  EXPECT_EQ(status, 200);
  ASSERT_EQ(body["workers"].size(), 1u);
  EXPECT_EQ(body["workers"][0]["worker_id"], "w1");
  EXPECT_EQ(body["workers"][0]["alive"], true);
}

TEST_F(HttpServerTest, UnknownIdIs404AndBadIdIs400) {
  auto [missing_status, missing] = Get("/api/sweeps/99");
  EXPECT_EQ(missing_status, 404);
  EXPECT_EQ(missing["code"], "NOT_FOUND");
  EXPECT_EQ(Get("/api/sweeps/99/trials").first, 404);
  EXPECT_EQ(Get("/api/trials/99").first, 404);
  auto [bad_status, bad] = Get("/api/sweeps/abc");
  EXPECT_EQ(bad_status, 400);
  EXPECT_THAT(bad["error"].get<std::string>(), HasSubstr("abc"));
  EXPECT_EQ(Get("/api/trials/-1").first, 400);
  EXPECT_EQ(Get("/api/nothing").first, 404);
}

TEST_F(HttpServerTest, Dashboard_IsServedFromEmbeddedAssets) {
  auto index = client_->Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_THAT(index->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(index->body, HasSubstr("app.js"));
  auto script = client_->Get("/app.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_THAT(script->get_header_value("Content-Type"), HasSubstr("javascript"));
  EXPECT_THAT(script->body, HasSubstr("./sweep_page.js"));
  auto page = client_->Get("/sweeps_page.js");
  ASSERT_TRUE(page);
  EXPECT_THAT(page->body, HasSubstr("/api/sweeps"));
  // The chart library comes from npm and is served by the server itself.
  auto uplot = client_->Get("/uPlot.iife.min.js");
  ASSERT_TRUE(uplot);
  EXPECT_EQ(uplot->status, 200);
  EXPECT_THAT(uplot->body, HasSubstr("uPlot"));
  EXPECT_THAT(index->body, HasSubstr("/uPlot.iife.min.js"));
  auto style = client_->Get("/style.css");
  ASSERT_TRUE(style);
  EXPECT_EQ(style->status, 200);
  auto missing = client_->Get("/missing.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HttpServerTest, PortInUse_IsUnavailable) {
  TrialStore* store = server_.store();
  HttpServer second(store, server_.scheduler());
  absl::Status status = second.Start("127.0.0.1", server_.http_port());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(HttpServerTest, WriteMethods_AreRefusedWith405OnEveryPath) {
  for (const char* path : {"/api/sweeps", "/api/sweeps/1", "/", "/nowhere"}) {
    auto post = client_->Post(path, "{}", "application/json");
    ASSERT_TRUE(post) << path;
    EXPECT_EQ(post->status, 405) << path;
    EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
    EXPECT_EQ(json::parse(post->body)["code"], "METHOD_NOT_ALLOWED");
    auto put = client_->Put(path, "{}", "application/json");
    ASSERT_TRUE(put) << path;
    EXPECT_EQ(put->status, 405) << path;
    auto remove = client_->Delete(path);
    ASSERT_TRUE(remove) << path;
    EXPECT_EQ(remove->status, 405) << path;
  }
}

}  // namespace
}  // namespace bitsweep::server
