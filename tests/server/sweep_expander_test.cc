#include "server/sweep_expander.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <gtest/gtest.h>

#include <set>

#include "server/config_patcher.h"

namespace bitsweep::server {
namespace {

using google::protobuf::Value;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Value Num(double n) {
  Value v;
  v.set_number_value(n);
  return v;
}
Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}
Value List(std::initializer_list<Value> values) {
  Value v;
  v.mutable_list_value();  // an empty list is still a list
  for (const Value& e : values) *v.mutable_list_value()->add_values() = e;
  return v;
}

void AddParameter(v1::SweepSpec* spec, const std::string& path,
                  std::initializer_list<Value> values) {
  v1::SweepParameter* parameter = spec->add_parameters();
  parameter->set_path(path);
  for (const Value& value : values) *parameter->mutable_values()->add_values() = value;
}

// base: {<section>: {<field>: value}}
void SetBase(v1::SweepSpec* spec, const std::string& section, const std::string& field,
             const Value& value) {
  Value& inner = (*spec->mutable_base()->mutable_fields())[section];
  (*inner.mutable_struct_value()->mutable_fields())[field] = value;
}

v1::SweepSpec Spec() {
  v1::SweepSpec spec;
  spec.set_name("test");
  return spec;
}

std::string ErrorOf(const v1::SweepSpec& spec, int64_t max_trials = 100'000) {
  SweepExpander expander(SweepExpanderOptions{max_trials});
  auto trials = expander.Expand(spec);
  EXPECT_FALSE(trials.ok());
  if (trials.ok()) return "";
  EXPECT_EQ(trials.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(trials.status().message());
}

TEST(SweepExpanderTest, Grid_IsCartesianProductInFileOrderWithSeedsInnermost) {
  v1::SweepSpec spec = Spec();
  spec.set_seeds(2);
  AddParameter(&spec, "precision.default.format", {Str("mask:12"), Str("fp16"), Str("fp32")});
  AddParameter(&spec, "train.batch_size", {Num(32), Num(128)});
  SweepExpander expander;
  auto trials = expander.Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 12u);
  EXPECT_EQ(*expander.CountTrials(spec), 12);
  const char* formats[] = {"mask:12", "fp16", "fp32"};
  const int batches[] = {32, 128};
  std::set<std::string> hashes;
  for (size_t i = 0; i < trials->size(); ++i) {
    const PlannedTrial& trial = (*trials)[i];
    EXPECT_EQ(trial.config.seed(), i % 2);
    EXPECT_EQ(trial.config.train().batch_size(), batches[(i / 2) % 2]);
    EXPECT_EQ(trial.config.precision().default_().format(), formats[i / 4]);
    ASSERT_EQ(trial.params.size(), 2u);
    EXPECT_EQ(trial.params[0].path(), "precision.default.format");
    EXPECT_EQ(trial.params[0].value(), formats[i / 4]);
    EXPECT_EQ(trial.params[1].value(), std::to_string(batches[(i / 2) % 2]));
    EXPECT_EQ(trial.config_hash.size(), 64u);
    hashes.insert(trial.config_hash);
  }
  EXPECT_EQ(hashes.size(), 12u);  // the seed is part of the identity
}

TEST(SweepExpanderTest, NoParameters_GivesOneTrialPerSeedWithDefaults) {
  v1::SweepSpec spec = Spec();
  auto trials = SweepExpander().Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 1u);
  EXPECT_EQ((*trials)[0].config.train().batch_size(), 128);  // the trainer's default
  EXPECT_EQ((*trials)[0].config_hash, ConfigHash((*trials)[0].config));
}

TEST(SweepExpanderTest, Base_AppliesNestedMapsAndReplacesLists) {
  v1::SweepSpec spec = Spec();
  SetBase(&spec, "model", "conv", List({Num(8)}));
  SetBase(&spec, "train", "lr", Num(0.01));
  SetBase(&spec, "dataset", "name", Str("synthetic"));
  AddParameter(&spec, "model.dense", {List({Num(64), Num(32)}), List({})});
  auto trials = SweepExpander().Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 2u);
  const v1::TrialConfig& first = (*trials)[0].config;
  ASSERT_EQ(first.model().conv_size(), 1);
  EXPECT_EQ(first.model().conv(0), 8);
  EXPECT_EQ(first.model().kernel(), 5);  // untouched default
  EXPECT_DOUBLE_EQ(first.train().lr(), 0.01);
  EXPECT_EQ(first.dataset().name(), "synthetic");
  EXPECT_EQ(first.model().dense_size(), 2);
  EXPECT_EQ((*trials)[1].config.model().dense_size(), 0);
  EXPECT_EQ((*trials)[0].params[0].value(), "[64, 32]");
}

TEST(SweepExpanderTest, UnknownBaseField_IsReportedWithPathAndKnownFields) {
  v1::SweepSpec spec = Spec();
  SetBase(&spec, "model", "convs", List({Num(8)}));
  EXPECT_EQ(ErrorOf(spec),
            "base.model.convs: unknown field (known: conv, kernel, pool, dense, activation, "
            "init, init_scale, kernels, pools)");
}

TEST(SweepExpanderTest, UnknownParameterPath_IsReported) {
  v1::SweepSpec spec = Spec();
  AddParameter(&spec, "train.batchsize", {Num(32)});
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep.parameters.train.batchsize: unknown field"));
  spec = Spec();
  AddParameter(&spec, "model.kernel.size", {Num(3)});
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep.parameters.model.kernel.size: 'model.kernel' is "
                                        "not a message"));
}

TEST(SweepExpanderTest, WrongType_IsReportedWithPath) {
  v1::SweepSpec spec = Spec();
  AddParameter(&spec, "train.batch_size", {Num(32), Str("abc")});
  EXPECT_EQ(ErrorOf(spec), "sweep.parameters.train.batch_size: value \"abc\" is not an integer");
  spec = Spec();
  AddParameter(&spec, "train.batch_size", {Num(1.5)});
  EXPECT_EQ(ErrorOf(spec), "sweep.parameters.train.batch_size: value 1.5 is not an integer");
  spec = Spec();
  SetBase(&spec, "model", "activation", Num(3));
  EXPECT_EQ(ErrorOf(spec), "base.model.activation: value 3 is not a string");
  spec = Spec();
  SetBase(&spec, "model", "conv", Num(3));
  EXPECT_EQ(ErrorOf(spec), "base.model.conv: value 3 is not a list");
  spec = Spec();
  SetBase(&spec, "model", "conv", List({Num(3), Str("x")}));
  EXPECT_EQ(ErrorOf(spec), "base.model.conv[1]: value \"x\" is not an integer");
}

TEST(SweepExpanderTest, OutOfRangeInteger_IsReported) {
  v1::SweepSpec spec = Spec();
  AddParameter(&spec, "train.batch_size", {Num(3e9)});
  EXPECT_EQ(ErrorOf(spec),
            "sweep.parameters.train.batch_size: value 3000000000 is out of range for int32");
}

TEST(SweepExpanderTest, InvalidFormatValue_IsReportedWithItsPathAndIndex) {
  v1::SweepSpec spec = Spec();
  AddParameter(&spec, "precision.default.format", {Str("mask:10"), Str("fp16"), Str("mask:40")});
  std::string error = ErrorOf(spec);
  EXPECT_THAT(error, StartsWith("sweep.parameters.precision.default.format[2] = \"mask:40\": "
                                "precision.default.format"));
  EXPECT_THAT(error, HasSubstr("mask:40"));
}

TEST(SweepExpanderTest, InvalidBase_IsReportedUnderBase) {
  v1::SweepSpec spec = Spec();
  SetBase(&spec, "train", "batch_size", Num(0));
  EXPECT_THAT(ErrorOf(spec), StartsWith("base.train.batch_size: "));
}

TEST(SweepExpanderTest, TooManyTrials_RejectedBeforeExpansion) {
  v1::SweepSpec spec = Spec();
  spec.set_seeds(1000);
  // 1000 seeds x 1000 x 1000 x 1000 values would never fit in memory: the count is checked
  // first (with saturation), so this returns at once.
  for (const char* path : {"train.lr", "train.momentum", "train.epochs"}) {
    v1::SweepParameter* parameter = spec.add_parameters();
    parameter->set_path(path);
    for (int i = 0; i < 1000; ++i) *parameter->mutable_values()->add_values() = Num(1);
  }
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep: 1000000000000 trials exceed the limit of 100000"));
  v1::SweepSpec small = Spec();
  small.set_seeds(3);
  AddParameter(&small, "train.batch_size", {Num(1), Num(2)});
  EXPECT_EQ(ErrorOf(small, 5), "sweep: 6 trials exceed the limit of 5 (server flag --max-trials)");
}

TEST(SweepExpanderTest, SpecShapeErrors) {
  v1::SweepSpec spec = Spec();
  spec.set_name("");
  EXPECT_EQ(ErrorOf(spec), "name: must not be empty");
  spec = Spec();
  spec.set_name(std::string(201, 'x'));
  EXPECT_THAT(ErrorOf(spec), StartsWith("name: longer than 200"));
  spec = Spec();
  spec.set_method("annealing");
  EXPECT_EQ(ErrorOf(spec),
            "sweep.method: 'annealing' is not supported (known: grid, random, bisect)");
  spec = Spec();
  spec.set_seeds(1001);
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep.seeds: "));
  spec = Spec();
  spec.set_seeds(-1);
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep.seeds: "));
  spec = Spec();
  AddParameter(&spec, "train.lr", {});
  EXPECT_EQ(ErrorOf(spec), "sweep.parameters.train.lr: needs at least one value");
  spec = Spec();
  AddParameter(&spec, "train.lr", {Num(0.1)});
  AddParameter(&spec, "train.lr", {Num(0.2)});
  EXPECT_EQ(ErrorOf(spec), "sweep.parameters.train.lr: listed more than once");
  spec = Spec();
  AddParameter(&spec, "seed", {Num(1)});
  EXPECT_THAT(ErrorOf(spec), StartsWith("sweep.parameters.seed: "));
  spec = Spec();
  (*spec.mutable_base()->mutable_fields())["seed"] = Num(3);
  EXPECT_THAT(ErrorOf(spec), StartsWith("base.seed: "));
}

TEST(SweepExpanderTest, MaxSizedSweep_ExpandsQuickly) {
  v1::SweepSpec spec = Spec();
  spec.set_seeds(10);
  v1::SweepParameter* parameter = spec.add_parameters();
  parameter->set_path("train.batch_size");
  for (int i = 1; i <= 100; ++i) *parameter->mutable_values()->add_values() = Num(i);
  AddParameter(&spec, "precision.default.format",
               {Str("fp32"), Str("fp16"), Str("bf16"), Str("mask:12"), Str("mask:16")});
  auto trials = SweepExpander().Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  EXPECT_EQ(trials->size(), 5000u);
}

TEST(ConfigPatcherTest, DisplayText_IsHumanReadable) {
  EXPECT_EQ(ValueDisplayText(Num(128)), "128");
  EXPECT_EQ(ValueDisplayText(Num(0.05)), "0.05");
  EXPECT_EQ(ValueDisplayText(Str("mask:12")), "mask:12");
  EXPECT_EQ(ValueErrorText(Str("mask:12")), "\"mask:12\"");
  EXPECT_EQ(ValueDisplayText(List({Num(32), Num(32)})), "[32, 32]");
}

TEST(ConfigPatcherTest, NumericStrings_AreAcceptedForNumberFields) {
  v1::TrialConfig config;
  ASSERT_TRUE(SetFieldAtPath("train.batch_size", Str("64"), "", &config).ok());
  EXPECT_EQ(config.train().batch_size(), 64);
  ASSERT_TRUE(SetFieldAtPath("train.lr", Str("0.5"), "", &config).ok());
  EXPECT_DOUBLE_EQ(config.train().lr(), 0.5);
  EXPECT_FALSE(SetFieldAtPath("seed", Num(-1), "", &config).ok());  // uint64
}

TEST(SweepExpanderTest, SpecOverTheSizeLimit_IsRejectedBeforeExpansion) {
  v1::SweepSpec spec;
  spec.set_name("big");
  v1::SweepParameter* parameter = spec.add_parameters();
  parameter->set_path("train.batch_size");
  parameter->mutable_values()->add_values()->set_number_value(32);
  (*spec.mutable_base()->mutable_fields())["note"].set_string_value(
      std::string(SweepExpander::kMaxSpecBytes, 'x'));
  SweepExpander expander;
  absl::StatusOr<int64_t> count = expander.CountTrials(spec);
  ASSERT_FALSE(count.ok());
  EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(count.status().message()), StartsWith("sweep spec: "));
  EXPECT_THAT(std::string(count.status().message()),
              HasSubstr("bytes exceed the limit of 1048576"));
  EXPECT_FALSE(expander.Expand(spec).ok());
}

TEST(SweepExpanderTest, Random_DrawsDistinctGridPointsDeterministicallyInGridOrder) {
  v1::SweepSpec spec = Spec();
  spec.set_method("random");
  spec.set_samples(7);
  spec.set_seeds(2);
  AddParameter(&spec, "train.batch_size", {Num(8), Num(16), Num(32), Num(64)});
  AddParameter(&spec, "train.lr", {Num(0.1), Num(0.01), Num(0.001), Num(0.2), Num(0.3)});
  SweepExpander expander;
  auto first = expander.Expand(spec);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 14u);  // 7 points x 2 seeds
  std::set<std::string> points;
  std::vector<std::string> order;
  for (const PlannedTrial& trial : *first) {
    std::string point = trial.params[0].value() + "/" + trial.params[1].value();
    if (points.insert(point).second) order.push_back(point);
  }
  EXPECT_EQ(points.size(), 7u);
  auto again = expander.Expand(spec);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].config_hash, (*again)[i].config_hash);
  }
  // Another spec (another name) draws from another key: over several, the draws differ.
  bool differs = false;
  for (int k = 0; k < 5 && !differs; ++k) {
    v1::SweepSpec other = spec;
    other.set_name("other" + std::to_string(k));
    auto drawn = expander.Expand(other);
    ASSERT_TRUE(drawn.ok());
    for (size_t i = 0; i < drawn->size(); ++i) {
      if ((*drawn)[i].config_hash != (*first)[i].config_hash) differs = true;
    }
  }
  EXPECT_TRUE(differs);
  // All samples of the grid: the whole grid in grid order.
  spec.set_samples(20);
  auto all = expander.Expand(spec);
  spec.set_method("grid");
  spec.set_samples(0);
  auto grid = expander.Expand(spec);
  ASSERT_TRUE(all.ok() && grid.ok());
  ASSERT_EQ(all->size(), grid->size());
  for (size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].config_hash, (*grid)[i].config_hash);
  }
}

TEST(SweepExpanderTest, Bisect_StartsWithBaselineAndMiddleProbePerCombination) {
  v1::SweepSpec spec = Spec();
  spec.set_method("bisect");
  spec.mutable_bisect()->set_axis("precision.default.format");
  AddParameter(&spec, "train.batch_size", {Num(16), Num(32)});
  AddParameter(&spec, "precision.default.format",
               {Str("mask:10"), Str("mask:12"), Str("mask:14"), Str("mask:16"), Str("mask:18")});
  SweepExpander expander;
  auto trials = expander.Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 4u);
  EXPECT_EQ((*trials)[0].params[1].value(), "fp32");
  EXPECT_EQ((*trials)[0].config.precision().default_().format(), "fp32");
  EXPECT_EQ((*trials)[1].params[1].value(), "mask:14");
  EXPECT_EQ((*trials)[2].params[0].value(), "32");
  EXPECT_EQ((*trials)[2].params[1].value(), "fp32");
  auto count = expander.CountTrials(spec);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 4);
  auto groups = expander.PlanBisect(spec);
  ASSERT_TRUE(groups.ok());
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[1].probes.size(), 5u);
}

TEST(SweepExpanderTest, MethodOnlyFields_AreRejectedElsewhere) {
  v1::SweepSpec spec = Spec();
  spec.set_samples(3);
  EXPECT_EQ(ErrorOf(spec), "sweep.samples: only for method random");
  spec = Spec();
  spec.mutable_bisect()->set_axis("x");
  EXPECT_EQ(ErrorOf(spec), "sweep.bisect: only for method bisect");
  spec = Spec();
  spec.set_method("bisect");
  EXPECT_EQ(ErrorOf(spec), "sweep.bisect.axis: missing (name a swept parameter)");
}

}  // namespace
}  // namespace bitsweep::server
