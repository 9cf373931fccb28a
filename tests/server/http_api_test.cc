// The dashboard's JSON API (docs/api.md) over real HTTP on a server with a small real sweep:
// 2 formats x 2 roundings x 3 seeds, finished through the store, plus one running trial.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "analysis/sweep_analysis.h"
#include "nlohmann/json.hpp"
#include "server/server.h"
#include "server/sweep_read_model.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kWorker[] = "w1";

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    options.db_path = dir_.File("api.db");
    options.clock = &clock_;
    ASSERT_TRUE(server_.Start(options).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_.http_port());
    store_ = server_.store();
    ASSERT_TRUE(store_->RegisterWorker(kWorker, "inc", "host-a", 2, clock_.NowUnixMs(), 3).ok());
    sweep_id_ = CreateSweep();
  }

  // 12 trials: every one but the last finished with a 3-point curve; the last RUNNING with 1.
  int64_t CreateSweep() {
    v1::SweepSpec spec;
    spec.set_name("api sweep");
    spec.add_parameters()->set_path("precision.default.format");
    spec.add_parameters()->set_path("precision.default.rounding");
    std::vector<PlannedTrial> trials;
    for (const char* format : {"fp32", "mask:12"}) {
      for (const char* rounding : {"truncate", "stochastic"}) {
        for (int seed = 0; seed < 3; ++seed) {
          PlannedTrial& trial = trials.emplace_back();
          trial.config.set_seed(seed);
          trial.config.mutable_train()->set_target_accuracy(0.5);
          trial.params.resize(2);
          trial.params[0].set_path("precision.default.format");
          trial.params[0].set_value(format);
          trial.params[1].set_path("precision.default.rounding");
          trial.params[1].set_value(rounding);
          trial.config_hash = std::string(format) + rounding + std::to_string(seed);
        }
      }
    }
    int64_t id = *store_->CreateSweep(spec, trials, clock_.NowUnixMs());
    for (size_t i = 0; i < trials.size(); ++i) {
      auto lease = store_->LeaseNext(kWorker, clock_.NowUnixMs(), clock_.NowUnixMs() + 60'000);
      EXPECT_TRUE(lease.ok() && lease->has_value());
      v1::TrialRef ref;
      ref.set_trial_id((*lease)->trial_id);
      ref.set_attempt((*lease)->attempt);
      bool last = i + 1 == trials.size();
      std::vector<v1::CurvePoint> curve(last ? 1 : 3);
      for (size_t k = 0; k < curve.size(); ++k) {
        curve[k].set_iteration(100 * static_cast<int64_t>(k + 1));
        curve[k].set_test_accuracy(0.3 + 0.2 * static_cast<double>(k) +
                                   0.01 * static_cast<double>(i));
        curve[k].set_test_loss(1.0 / static_cast<double>(k + 1));
      }
      if (i == 0 && !last) {
        // Trial 1 records statistics: both sites at 100, only weights at 300, a layer at 200.
        for (size_t k : {0u, 2u}) {
          v1::SiteStats* weights = curve[k].add_sites();
          weights->set_site("weights");
          weights->set_effective_bits(8.0 + static_cast<double>(k));
          weights->set_quantization_error_percent(0.5);
          weights->set_overflow_percent(2.0);
        }
        v1::SiteStats* activations = curve[0].add_sites();
        activations->set_site("activations");
        activations->set_effective_bits(16);
        v1::LayerStats* conv0 = curve[1].add_layers();
        conv0->set_layer("conv0");
        conv0->set_gradient_norm(0.25);
        conv0->set_flushed_to_zero(0.125);
      }
      EXPECT_TRUE(store_->AppendPoints(kWorker, ref, curve).ok());
      if (last) {
        running_ = ref;
        continue;
      }
      v1::TrialResult result;
      result.set_outcome(i == 0 ? v1::TRIAL_OUTCOME_DIVERGED : v1::TRIAL_OUTCOME_COMPLETED);
      result.set_final_test_accuracy(curve.back().test_accuracy());
      result.set_best_test_accuracy(curve.back().test_accuracy());
      result.set_iterations_to_target(i % 2 == 0 ? 200 : 300);
      result.set_iterations(300);
      result.set_num_classes(2);
      for (int c : {40, 10, 5, 45}) result.add_confusion(c);
      result.set_kappa(0.7);
      clock_.AdvanceMs(1000);
      EXPECT_TRUE(store_->CompleteTrial(kWorker, ref, &result, "", clock_.NowUnixMs()).ok());
    }
    return id;
  }

  std::pair<int, json> Get(const std::string& path) {
    auto result = client_->Get(path.c_str());
    EXPECT_TRUE(result) << "no response for " << path;
    if (!result) return {0, json()};
    EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("application/json")) << path;
    return {result->status, json::parse(result->body)};
  }
  std::string SweepPath(const std::string& rest) {
    return "/api/sweeps/" + std::to_string(sweep_id_) + rest;
  }

  testing::TempDir dir_;
  common::FakeClock clock_;
  Server server_;
  TrialStore* store_ = nullptr;
  std::unique_ptr<httplib::Client> client_;
  int64_t sweep_id_ = 0;
  v1::TrialRef running_;
};

TEST_F(HttpApiTest, Sweeps_CarryCountsStartElapsedAndEta) {
  auto [status, body] = Get("/api/sweeps");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body["sweeps"].size(), 1u);
  const json& sweep = body["sweeps"][0];
  EXPECT_EQ(sweep["counts"]["done"], 11);
  EXPECT_EQ(sweep["counts"]["running"], 1);
  EXPECT_EQ(sweep["counts"]["diverged"], 1);
  EXPECT_EQ(sweep["counts"]["pruned"], 0);
  EXPECT_GT(sweep["started_unix_ms"].get<int64_t>(), 0);
  EXPECT_EQ(sweep["elapsed_ms"], 11'000);  // the fake clock moved 1 s per finished trial
  // 11 finished in 11 s, 1 left: about 1 s.
  EXPECT_EQ(sweep["eta_ms"], 1'000);
  auto [one_status, one] = Get(SweepPath(""));
  EXPECT_EQ(one_status, 200);
  EXPECT_EQ(one["eta_ms"], 1'000);
}

TEST_F(HttpApiTest, Table_HoldsEveryTrialAsTheStoreHasIt) {
  auto [status, table] = Get(SweepPath("/table"));
  ASSERT_EQ(status, 200);
  ASSERT_EQ(table["axes"].size(), 2u);
  EXPECT_EQ(table["axes"][0]["path"], "precision.default.format");
  EXPECT_EQ(table["axes"][0]["values"], json({"fp32", "mask:12"}));
  EXPECT_DOUBLE_EQ(table["target_accuracy"].get<double>(), 0.5);
  std::map<std::string, size_t> column;
  for (size_t c = 0; c < table["columns"].size(); ++c) column[table["columns"][c]] = c;
  auto trials = store_->ListTrials(sweep_id_, false);
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(table["rows"].size(), trials->size());
  for (size_t i = 0; i < trials->size(); ++i) {
    const json& row = table["rows"][i];
    const v1::Trial& trial = (*trials)[i];
    EXPECT_EQ(row[column["id"]], trial.id());
    EXPECT_EQ(row[column["seed"]], trial.seed());
    EXPECT_EQ(row[column["params"]][0], trial.params(0).value());
    EXPECT_EQ(row[column["worker_id"]], kWorker);
    if (trial.state() == v1::TRIAL_STATE_DONE) {
      EXPECT_EQ(row[column["state"]], "DONE");
      EXPECT_NEAR(row[column["final_test_accuracy"]].get<double>(),
                  trial.result().final_test_accuracy(), 1e-6);
      EXPECT_EQ(row[column["iterations_to_target"]], trial.result().iterations_to_target());
    } else {
      EXPECT_EQ(row[column["state"]], "RUNNING");
      EXPECT_TRUE(row[column["final_test_accuracy"]].is_null());
    }
  }
}

TEST_F(HttpApiTest, Groups_AggregateTheSeedsOfEachGridPoint) {
  auto [status, body] = Get(SweepPath("/groups"));
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body["groups"].size(), 4u);
  auto trials = *store_->ListTrials(sweep_id_, false);
  for (const json& group : body["groups"]) {
    // By hand from the store: the finished trials of the group.
    std::vector<double> finals;
    for (const v1::Trial& trial : trials) {
      if (trial.params(0).value() != group["params"][0] ||
          trial.params(1).value() != group["params"][1]) {
        continue;
      }
      if (trial.state() == v1::TRIAL_STATE_DONE)
        finals.push_back(trial.result().final_test_accuracy());
    }
    double mean = 0;
    for (double x : finals) mean += x;
    mean /= static_cast<double>(finals.size());
    double ss = 0;
    for (double x : finals) ss += (x - mean) * (x - mean);
    double sd = std::sqrt(ss / static_cast<double>(finals.size() - 1));
    const json& stats = group["final_test_accuracy"];
    EXPECT_EQ(stats["n"], finals.size());
    EXPECT_NEAR(stats["mean"].get<double>(), mean, 1e-5);
    EXPECT_NEAR(stats["std"].get<double>(), sd, 1e-5);
    EXPECT_NEAR(stats["ci95"].get<double>(),
                StudentT975(static_cast<int64_t>(finals.size()) - 1) * sd /
                    std::sqrt(static_cast<double>(finals.size())),
                1e-5);
    EXPECT_EQ(group["trial_ids"].size(), 3u);
    EXPECT_EQ(group["curve"]["iteration"], json({100, 200, 300}));
  }
  // The last group holds the running trial: 2 done, 1 running; its first iteration has 3 values.
  const json& last = body["groups"][3];
  EXPECT_EQ(last["outcomes"]["completed"], 2);
  EXPECT_EQ(last["outcomes"]["running"], 1);
  EXPECT_EQ(last["curve"]["n"], json({3, 2, 2}));
  // The first trial diverged: counted as an outcome, and its accuracy is a result.
  EXPECT_EQ(body["groups"][0]["outcomes"]["diverged"], 1);
  EXPECT_EQ(body["groups"][0]["final_test_accuracy"]["n"], 3);
}

TEST_F(HttpApiTest, Curves_AreColumnarAndEqualTheStore) {
  auto [status, body] = Get(SweepPath("/curves?metric=test_loss"));
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body["trial_ids"].size(), 12u);
  ASSERT_EQ(body["offsets"].size(), 13u);
  EXPECT_EQ(body["offsets"].back(), 11 * 3 + 1);
  for (size_t i = 0; i < body["trial_ids"].size(); ++i) {
    auto curve = *store_->GetCurve(body["trial_ids"][i].get<int64_t>());
    size_t begin = body["offsets"][i].get<size_t>();
    ASSERT_EQ(body["offsets"][i + 1].get<size_t>() - begin, curve.size());
    for (size_t k = 0; k < curve.size(); ++k) {
      EXPECT_EQ(body["iteration"][begin + k], curve[k].iteration());
      EXPECT_NEAR(body["value"][begin + k].get<double>(), curve[k].test_loss(), 1e-5);
    }
  }
}

TEST_F(HttpApiTest, Export_CsvAndJsonEqualTheStore) {
  auto trials = *store_->ListTrials(sweep_id_, false);
  auto csv = client_->Get(SweepPath("/export?format=csv").c_str());
  ASSERT_TRUE(csv);
  EXPECT_EQ(csv->status, 200);
  EXPECT_THAT(csv->get_header_value("Content-Type"), HasSubstr("text/csv"));
  std::istringstream lines(csv->body);
  std::string header;
  std::getline(lines, header);
  EXPECT_THAT(header, HasSubstr("id,idx,precision.default.format,precision.default.rounding,seed"));
  std::string line;
  size_t count = 0;
  while (std::getline(lines, line)) {
    ASSERT_LT(count, trials.size());
    EXPECT_EQ(line.substr(0, line.find(',')), std::to_string(trials[count].id()));
    EXPECT_THAT(line, HasSubstr("," + trials[count].params(0).value() + "," +
                                trials[count].params(1).value() + ","));
    ++count;
  }
  EXPECT_EQ(count, trials.size());
  auto [status, rows] = Get(SweepPath("/export?format=json"));
  ASSERT_EQ(status, 200);
  ASSERT_EQ(rows.size(), trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    EXPECT_EQ(rows[i]["id"], trials[i].id());
    EXPECT_EQ(rows[i]["precision.default.rounding"], trials[i].params(1).value());
    if (trials[i].state() == v1::TRIAL_STATE_DONE) {
      EXPECT_NEAR(rows[i]["final_test_accuracy"].get<double>(),
                  trials[i].result().final_test_accuracy(), 1e-6);
    }
  }
  EXPECT_EQ(Get(SweepPath("/export?format=xml")).first, 400);
}

TEST_F(HttpApiTest, Trial_HasConfigCurveConfusionAndHistory) {
  auto [status, body] = Get("/api/trials/1");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["trial"]["result"]["confusion"].size(), 4u);
  EXPECT_DOUBLE_EQ(body["trial"]["result"]["kappa"].get<double>(), 0.7);
  EXPECT_EQ(body["curve"].size(), 3u);
  EXPECT_DOUBLE_EQ(body["trial"]["config"]["train"]["target_accuracy"].get<double>(), 0.5);
  ASSERT_EQ(body["history"]["curve_attempts"].size(), 1u);
  EXPECT_EQ(body["history"]["curve_attempts"][0]["attempt"], 1);
  EXPECT_EQ(body["history"]["curve_attempts"][0]["points"], 3);
}

TEST_F(HttpApiTest, Trial_HasSiteAndLayerSeriesColumnar_WhenRecorded) {
  auto [status, body] = Get("/api/trials/1");
  ASSERT_EQ(status, 200);
  const json& sites = body["site_series"];
  EXPECT_EQ(sites["iteration"], json({100, 300}));
  ASSERT_EQ(sites["sites"].size(), 2u);
  EXPECT_EQ(sites["sites"][0]["site"], "weights");
  EXPECT_EQ(sites["sites"][0]["effective_bits"], json({8.0, 10.0}));
  EXPECT_EQ(sites["sites"][0]["quantization_error_percent"], json({0.5, 0.5}));
  EXPECT_EQ(sites["sites"][0]["overflow_percent"], json({2.0, 2.0}));
  EXPECT_EQ(sites["sites"][1]["site"], "activations");
  EXPECT_EQ(sites["sites"][1]["effective_bits"], json({16.0, nullptr}));
  const json& layers = body["layer_series"];
  EXPECT_EQ(layers["iteration"], json({200}));
  ASSERT_EQ(layers["layers"].size(), 1u);
  EXPECT_EQ(layers["layers"][0]["layer"], "conv0");
  EXPECT_EQ(layers["layers"][0]["gradient_norm"], json({0.25}));
  EXPECT_EQ(layers["layers"][0]["flushed_to_zero"], json({0.125}));
  // Columnar only: the curve's points do not repeat them.
  for (const json& point : body["curve"]) {
    EXPECT_TRUE(point.value("sites", json::array()).empty());
    EXPECT_TRUE(point.value("layers", json::array()).empty());
  }

  auto [other_status, other] = Get("/api/trials/2");
  ASSERT_EQ(other_status, 200);
  EXPECT_FALSE(other.contains("site_series"));
  EXPECT_FALSE(other.contains("layer_series"));
}

TEST_F(HttpApiTest, Workers_HaveHostSlotsRunningAndThroughput) {
  auto [status, body] = Get("/api/workers");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body["workers"].size(), 1u);
  EXPECT_EQ(body["workers"][0]["host"], "host-a");
  EXPECT_EQ(body["workers"][0]["slots"], 2);
  EXPECT_EQ(body["workers"][0]["running"], 1);
  EXPECT_EQ(body["workers"][0]["finished_last_hour"], 11);
}

TEST_F(HttpApiTest, BadIds_Are404WithAJsonError) {
  for (const char* rest : {"/table", "/groups", "/curves", "/export", "/events", "/analysis"}) {
    auto [status, body] = Get(std::string("/api/sweeps/999") + rest);
    EXPECT_EQ(status, 404) << rest;
    EXPECT_EQ(body["code"], "NOT_FOUND") << rest;
    EXPECT_THAT(body["error"].get<std::string>(), HasSubstr("999")) << rest;
    EXPECT_EQ(Get(std::string("/api/sweeps/x") + rest).first, 400) << rest;
  }
  auto [status, body] = Get("/api/trials/999");
  EXPECT_EQ(status, 404);
  auto [metric_status, metric] = Get(SweepPath("/groups?metric=speed"));
  EXPECT_EQ(metric_status, 400);
  EXPECT_THAT(metric["error"].get<std::string>(), HasSubstr("speed"));
  auto post = client_->Post(SweepPath("/table").c_str(), "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
}

// The sweep's final accuracies are 0.7 + 0.01·i for trial i (i = 0..10 done, 11 running):
// fp32/truncate 0.71, fp32/stochastic 0.74, mask:12/truncate 0.77, mask:12/stochastic 0.795.
TEST_F(HttpApiTest, Analysis_IsTheCliAnalysisOfTheStoredTrials) {
  auto [status, body] = Get(SweepPath("/analysis?delta=1"));
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["trials"], 12);
  ASSERT_EQ(body["groups"].size(), 4u);
  EXPECT_EQ(body["groups"][0]["params"]["precision.default.format"], "fp32");
  EXPECT_NEAR(body["groups"][0]["mean"].get<double>(), 0.71, 1e-6);
  EXPECT_NEAR(body["groups"][3]["mean"].get<double>(), 0.795, 1e-6);
  EXPECT_EQ(body["groups"][3]["n"], 2);
  EXPECT_EQ(body["groups"][3]["unfinished"], 1);
  const json& tolerance = body["tolerance"];
  EXPECT_EQ(tolerance["axis"], "precision.default.format");
  EXPECT_DOUBLE_EQ(tolerance["delta"].get<double>(), 0.01);
  ASSERT_EQ(tolerance["slices"].size(), 2u);
  for (const json& slice : tolerance["slices"]) EXPECT_EQ(slice["min_bits"], 12) << slice;
  EXPECT_FALSE(body["sensitivity"]["terms"].empty());
  // Exactly what `bitsweep analyze --json --delta 1` computes from the same trials.
  auto analysis = analysis::AnalyzeSweep(*store_->ListTrials(sweep_id_, false), {1.0, ""});
  ASSERT_TRUE(analysis.ok());
  EXPECT_EQ(body, json::parse(analysis::SweepAnalysisJson(*analysis).dump()));
}

// The server keeps the analysis until a trial of the sweep changes: finishing the running
// trial must show in the next answer.
TEST_F(HttpApiTest, Analysis_FollowsTrialChangesThroughTheCache) {
  auto [status, before] = Get(SweepPath("/analysis"));
  ASSERT_EQ(status, 200);
  EXPECT_EQ(Get(SweepPath("/analysis")).second, before);  // unchanged: the cached answer
  EXPECT_EQ(before["groups"][3]["n"], 2);
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_final_test_accuracy(0.9);
  result.set_iterations(100);
  ASSERT_TRUE(store_->CompleteTrial(kWorker, running_, &result, "", clock_.NowUnixMs()).ok());
  auto [after_status, after] = Get(SweepPath("/analysis"));
  ASSERT_EQ(after_status, 200);
  EXPECT_EQ(after["groups"][3]["n"], 3);
  EXPECT_EQ(after["groups"][3]["unfinished"], 0);
  EXPECT_NEAR(after["groups"][3]["mean"].get<double>(), (0.79 + 0.80 + 0.9) / 3, 1e-6);
}

TEST_F(HttpApiTest, Analysis_BadParametersAre400NamingThem) {
  for (const auto& [query, word] : {std::pair<const char*, const char*>{"?delta=abc", "delta"},
                                    {"?delta=-1", "delta"},
                                    {"?delta=nan", "delta"},
                                    {"?axis=model.dense", "model.dense"}}) {
    auto [status, body] = Get(SweepPath(std::string("/analysis") + query));
    EXPECT_EQ(status, 400) << query;
    EXPECT_THAT(body["error"].get<std::string>(), HasSubstr(word)) << query;
  }
}

TEST_F(HttpApiTest, Events_CarryNewPointsAndStateChanges) {
  std::mutex mu;
  std::condition_variable cv;
  std::string received;
  std::atomic<bool> stop{false};
  httplib::Client events_client("127.0.0.1", server_.http_port());
  events_client.set_read_timeout(10, 0);
  std::thread reader([&] {
    events_client.Get(SweepPath("/events").c_str(), [&](const char* data, size_t size) {
      std::lock_guard<std::mutex> lock(mu);
      received.append(data, size);
      cv.notify_all();
      return !stop.load();
    });
  });
  auto wait_for = [&](const std::string& text) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return received.find(text) != std::string::npos; });
  };
  // The first event: the running trial's points so far.
  ASSERT_TRUE(wait_for("\"hello\":true"));
  EXPECT_TRUE(wait_for("\"after_iteration\":-1"));
  std::vector<v1::CurvePoint> more(1);
  more[0].set_iteration(200);
  more[0].set_test_accuracy(0.75);
  ASSERT_TRUE(store_->AppendPoints(kWorker, running_, more).ok());
  EXPECT_TRUE(wait_for("\"after_iteration\":100,\"iteration\":[200]"));
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_final_test_accuracy(0.75);
  ASSERT_TRUE(store_->CompleteTrial(kWorker, running_, &result, "", clock_.NowUnixMs()).ok());
  EXPECT_TRUE(wait_for("\"DONE\""));
  EXPECT_TRUE(wait_for("\"done\":12"));
  stop = true;
  // Wake the stream with one more change so the receiver sees `stop` and closes.
  events_client.stop();
  reader.join();
}

TEST(StudentT975Test, MatchesTheTableAndTendsToTheNormalQuantile) {
  EXPECT_DOUBLE_EQ(StudentT975(1), 12.706);
  EXPECT_DOUBLE_EQ(StudentT975(2), 4.303);
  EXPECT_DOUBLE_EQ(StudentT975(30), 2.042);
  EXPECT_DOUBLE_EQ(StudentT975(1000), 1.96);
  EXPECT_TRUE(std::isnan(StudentT975(0)));
}

}  // namespace
}  // namespace bitsweep::server
