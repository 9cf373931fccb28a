#include "client/sweep_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"

namespace bitsweep::client {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kDesignExample[] = R"yaml(name: rips-bitwidth
base:                                # one complete TrialConfig
  dataset: {name: mnist, train_limit: 0, test_limit: 0}
  model:   {conv: [32, 32], kernel: 5, pool: 2, dense: [256], activation: relu, init: he}
  train:   {epochs: 2, batch_size: 128, optimizer: sgd, lr: 0.05, eval_every: 100, target_accuracy: 0.97}
  precision:
    default: {format: "mask:16", rounding: stochastic}
    sites:   [weights, activations, errors]
sweep:
  method: grid
  seeds: 3
  parameters:
    precision.default.format: ["mask:10", "mask:12", fp32]
    precision.default.rounding: [truncate, stochastic]
    train.batch_size: [32, 128, 512]
priority: 5
)yaml";

v1::SweepSpec SpecFromText(const std::string& text) {
  v1::SweepSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
  return spec;
}

google::protobuf::ListValue ListFromText(const std::string& text) {
  google::protobuf::ListValue list;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &list)) << text;
  return list;
}

// The first parameter's values of a sweep with one parameter `p`.
absl::StatusOr<google::protobuf::ListValue> ParseValues(const std::string& values_yaml) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: t\nsweep:\n  parameters:\n    p: " + values_yaml + "\n", "t.yaml");
  if (!spec.ok()) return spec.status();
  if (spec->parameters_size() != 1) return absl::InternalError("expected one parameter");
  return spec->parameters(0).values();
}

TEST(SweepFileTest, DesignExample_ParsesIntoExactSpec) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml(kDesignExample, "sweep.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const v1::SweepSpec expected = SpecFromText(R"pb(
    name: "rips-bitwidth"
    method: "grid"
    seeds: 3
    priority: 5
    base {
      fields {
        key: "dataset"
        value {
          struct_value {
            fields {
              key: "name"
              value { string_value: "mnist" }
            }
            fields {
              key: "train_limit"
              value { number_value: 0 }
            }
            fields {
              key: "test_limit"
              value { number_value: 0 }
            }
          }
        }
      }
      fields {
        key: "model"
        value {
          struct_value {
            fields {
              key: "conv"
              value {
                list_value {
                  values { number_value: 32 }
                  values { number_value: 32 }
                }
              }
            }
            fields {
              key: "kernel"
              value { number_value: 5 }
            }
            fields {
              key: "pool"
              value { number_value: 2 }
            }
            fields {
              key: "dense"
              value { list_value { values { number_value: 256 } } }
            }
            fields {
              key: "activation"
              value { string_value: "relu" }
            }
            fields {
              key: "init"
              value { string_value: "he" }
            }
          }
        }
      }
      fields {
        key: "train"
        value {
          struct_value {
            fields {
              key: "epochs"
              value { number_value: 2 }
            }
            fields {
              key: "batch_size"
              value { number_value: 128 }
            }
            fields {
              key: "optimizer"
              value { string_value: "sgd" }
            }
            fields {
              key: "lr"
              value { number_value: 0.05 }
            }
            fields {
              key: "eval_every"
              value { number_value: 100 }
            }
            fields {
              key: "target_accuracy"
              value { number_value: 0.97 }
            }
          }
        }
      }
      fields {
        key: "precision"
        value {
          struct_value {
            fields {
              key: "default"
              value {
                struct_value {
                  fields {
                    key: "format"
                    value { string_value: "mask:16" }
                  }
                  fields {
                    key: "rounding"
                    value { string_value: "stochastic" }
                  }
                }
              }
            }
            fields {
              key: "sites"
              value {
                list_value {
                  values { string_value: "weights" }
                  values { string_value: "activations" }
                  values { string_value: "errors" }
                }
              }
            }
          }
        }
      }
    }
    parameters {
      path: "precision.default.format"
      values {
        values { string_value: "mask:10" }
        values { string_value: "mask:12" }
        values { string_value: "fp32" }
      }
    }
    parameters {
      path: "precision.default.rounding"
      values {
        values { string_value: "truncate" }
        values { string_value: "stochastic" }
      }
    }
    parameters {
      path: "train.batch_size"
      values {
        values { number_value: 32 }
        values { number_value: 128 }
        values { number_value: 512 }
      }
    }
  )pb");
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*spec, expected))
      << spec->DebugString();
}

TEST(SweepFileTest, PlainScalars_BecomeNumbersBoolsNullsOrStrings) {
  absl::StatusOr<google::protobuf::ListValue> values = ParseValues(
      "[1, -2, +3, 0.5, 1e-3, -.5, 7., true, false, True, null, ~, fp32, 1.2.3, 0x10, "
      "inf, .nan, 1e, yes]");
  ASSERT_TRUE(values.ok()) << values.status();
  const auto expected = ListFromText(R"pb(
    values { number_value: 1 }
    values { number_value: -2 }
    values { number_value: 3 }
    values { number_value: 0.5 }
    values { number_value: 0.001 }
    values { number_value: -0.5 }
    values { number_value: 7 }
    values { bool_value: true }
    values { bool_value: false }
    values { bool_value: true }
    values { null_value: NULL_VALUE }
    values { null_value: NULL_VALUE }
    values { string_value: "fp32" }
    values { string_value: "1.2.3" }
    values { string_value: "0x10" }
    values { string_value: "inf" }
    values { string_value: ".nan" }
    values { string_value: "1e" }
    values { string_value: "yes" }
  )pb");
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*values, expected))
      << values->DebugString();
}

TEST(SweepFileTest, QuotedScalars_StayStrings) {
  absl::StatusOr<google::protobuf::ListValue> values =
      ParseValues(R"(["16", '0.5', "true", "null", !!str 7])");
  ASSERT_TRUE(values.ok()) << values.status();
  const auto expected = ListFromText(R"pb(
    values { string_value: "16" }
    values { string_value: "0.5" }
    values { string_value: "true" }
    values { string_value: "null" }
    values { string_value: "7" }
  )pb");
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*values, expected))
      << values->DebugString();
}

TEST(SweepFileTest, NestedParameterValues_ConvertRecursively) {
  absl::StatusOr<google::protobuf::ListValue> values = ParseValues("[[32], [32, 64], {a: 1}]");
  ASSERT_TRUE(values.ok()) << values.status();
  ASSERT_EQ(values->values_size(), 3);
  EXPECT_EQ(values->values(1).list_value().values(1).number_value(), 64);
  EXPECT_EQ(values->values(2).struct_value().fields().at("a").number_value(), 1);
}

TEST(SweepFileTest, NameOnly_IsAValidSpecWithDefaults) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: single\n", "s.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "single");
  EXPECT_EQ(spec->base().fields_size(), 0);
  EXPECT_EQ(spec->parameters_size(), 0);
  EXPECT_EQ(spec->seeds(), 0);
}

TEST(SweepFileTest, MalformedYaml_ReportsFileLineAndColumn) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: x\nsweep:\n  parameters: [1, 2\n", "bad.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), StartsWith("bad.yaml:4:1: "));
}

TEST(SweepFileTest, BadIndentation_ReportsFileLineAndColumn) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: x\n  base: 1\n", "bad.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), StartsWith("bad.yaml:2:7: "));
}

TEST(SweepFileTest, UnknownTopLevelKey_IsNamedWithPosition) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: x\nbsae: {}\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(spec.status().message()),
            "s.yaml:2:1: bsae: unknown key (known: name, base, sweep, priority)");
}

TEST(SweepFileTest, UnknownSweepKey_IsNamedWithItsPath) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: x\nsweep:\n  method: grid\n  paramters: {}\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(std::string(spec.status().message()),
            "s.yaml:4:3: sweep.paramters: unknown key (known: method, seeds, parameters)");
}

TEST(SweepFileTest, ParameterGivenAsScalar_IsAnErrorNamingThePath) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: x\nsweep:\n  parameters:\n    train.lr: 0.1\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              StartsWith("s.yaml:4:15: sweep.parameters.train.lr: "
                         "expected a list of values, got a scalar"));
}

TEST(SweepFileTest, EmptyParameterList_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: x\nsweep:\n  parameters:\n    train.lr: []\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("sweep.parameters.train.lr: the list of values is empty"));
}

TEST(SweepFileTest, MissingName_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("base: {}\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("name: required key is missing"));
  EXPECT_THAT(std::string(spec.status().message()), StartsWith("s.yaml:"));
}

TEST(SweepFileTest, NonIntegerSeeds_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: x\nsweep: {seeds: 2.5}\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("sweep.seeds: expected an integer, got \"2.5\""));
}

TEST(SweepFileTest, BaseThatIsNotAMap_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: x\nbase: [1]\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("base: expected a map, got a list"));
}

TEST(SweepFileTest, DuplicateKey_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec =
      ParseSweepYaml("name: x\nbase:\n  train: {lr: 1, lr: 2}\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("base.train.lr: duplicate key"));
}

TEST(SweepFileTest, TopLevelList_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("- name: x\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("expected a map with keys name, base"));
}

TEST(SweepFileTest, EmptyOrCommentOnlyText_IsAnError) {
  for (const char* text : {"", "# nothing here\n"}) {
    absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml(text, "empty.yaml");
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(spec.status().message()), StartsWith("empty.yaml: empty sweep file"));
  }
}

// Regression: yaml-cpp 0.7's LoadAll loops forever, allocating, on this input (found by
// fuzz/sweep_file_fuzzer); the parser must answer with an error instead.
TEST(SweepFileTest, InputThatHangsYamlCppLoadAll_IsAnErrorNotAHang) {
  for (const char* text : {"\"\"\"\",9", ",", "a: 1\n\"\"\"\",9\n"}) {
    absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml(text, "hang.yaml");
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(spec.status().message()), StartsWith("hang.yaml")) << text;
  }
}

TEST(SweepFileTest, SeveralDocuments_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepYaml("name: a\n---\nname: b\n", "s.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("expected one YAML document, found 2"));
}

class SweepFileOnDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "sweep_file_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(SweepFileOnDiskTest, ValidFile_Parses) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(Write("ok.yaml", kDesignExample));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "rips-bitwidth");
  EXPECT_EQ(spec->parameters_size(), 3);
}

TEST_F(SweepFileOnDiskTest, ErrorsNameThePathAsGiven) {
  const std::string path = Write("bad.yaml", "name: [\n");
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), StartsWith(path + ":2:1: "));
}

TEST_F(SweepFileOnDiskTest, EmptyFile_IsAnError) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(Write("empty.yaml", ""));
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("empty sweep file"));
}

TEST_F(SweepFileOnDiskTest, NonexistentFile_IsNotFoundNamingIt) {
  const std::string path = (dir_ / "missing.yaml").string();
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(spec.status().message()),
            "cannot read sweep file " + path + ": No such file or directory");
}

TEST_F(SweepFileOnDiskTest, Directory_IsAnErrorNamingIt) {
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(dir_.string());
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(dir_.string() + ": is a directory"));
}

}  // namespace
}  // namespace bitsweep::client
