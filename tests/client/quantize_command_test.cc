// `bitsweep quantize`: the value parser, the bit patterns and the command end to end (through
// RunCli, as a user calls it).
#include "client/quantize_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "client/cli.h"
#include "worker/trainer/quant/quantizer.h"

namespace bitsweep::client {
namespace {

using ::testing::HasSubstr;

TEST(ParseQuantizeValuesTest, ReadsDecimalHexSignsAndSpecials) {
  auto values = ParseQuantizeValues(" 1.5\t-2e-3\n+7 0x1p-24 -0X1.8P1 inf -Infinity nan 0 -0 \r\n");
  ASSERT_TRUE(values.ok()) << values.status();
  ASSERT_EQ(values->size(), 10u);
  EXPECT_EQ((*values)[0], 1.5);
  EXPECT_EQ((*values)[1], -2e-3);
  EXPECT_EQ((*values)[2], 7.0);
  EXPECT_EQ((*values)[3], 0x1p-24);
  EXPECT_EQ((*values)[4], -3.0);
  EXPECT_EQ((*values)[5], INFINITY);
  EXPECT_EQ((*values)[6], -INFINITY);
  EXPECT_TRUE(std::isnan((*values)[7]));
  EXPECT_TRUE(std::signbit((*values)[9]));
  EXPECT_TRUE(ParseQuantizeValues("").ok());
  EXPECT_TRUE(ParseQuantizeValues(" \n\t ")->empty());
}

TEST(ParseQuantizeValuesTest, RejectsWhatIsNotANumberNamingIt) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"1 2 abc", "value 3: 'abc' is not a number"},
      {"1.5.2", "value 1: '1.5.2' is not a number"},
      {"--1", "value 1: '--1' is not a number"},
      {"+-1", "value 1: '+-1' is not a number"},
      {"-", "value 1: '-' is not a number"},
      {"0x", "value 1: '0x' is not a number"},
      {"1,5", "value 1: '1,5' is not a number"},
      {"1e999", "value 1: '1e999' is out of range"},
      {"1 \x01\xff", "value 2: '\\x01\\xff' is not a number"},
  };
  for (const Case& c : cases) {
    auto values = ParseQuantizeValues(c.text);
    ASSERT_FALSE(values.ok()) << c.text;
    EXPECT_EQ(values.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(values.status().message(), c.message);
  }
  // Long garbage is cut in the message.
  auto long_token = ParseQuantizeValues(std::string(1000, 'z'));
  EXPECT_THAT(std::string(long_token.status().message()), HasSubstr("zzz...' is not a number"));
  EXPECT_LT(long_token.status().message().size(), 100u);
}

trainer::Format F(const char* spec) { return *trainer::ParseFormat(spec); }

TEST(QuantizedBitsTest, ShowsEachFormatsEncoding) {
  EXPECT_EQ(QuantizedBits(F("fp16"), 0, 0, 1.0f), "0 01111 0000000000");
  EXPECT_EQ(QuantizedBits(F("fp16"), 0, 0, -65504.0f), "1 11110 1111111111");
  EXPECT_EQ(QuantizedBits(F("fp16"), 0, 0, 0x1p-24f), "0 00000 0000000001");  // subnormal
  EXPECT_EQ(QuantizedBits(F("fp16"), 0, 0, INFINITY), "0 11111 0000000000");
  EXPECT_EQ(QuantizedBits(F("fp16"), 0, 0, -0.0f), "1 00000 0000000000");
  EXPECT_EQ(QuantizedBits(F("bf16"), 0, 0, 1.5f), "0 01111111 1000000");
  EXPECT_EQ(QuantizedBits(F("float:2,0"), 0, 0, 2.0f), "0 10");
  EXPECT_EQ(QuantizedBits(F("mask:12"), 0, 0, -1.25f), "1 01111111 010");
  EXPECT_EQ(QuantizedBits(F("fp32"), 0, 0, 2.0f), "0 10000000 00000000000000000000000");
  EXPECT_EQ(QuantizedBits(F("fixed:8,4"), 4, 0, 1.5f), "0001.1000");
  EXPECT_EQ(QuantizedBits(F("fixed:8,4"), 4, 0, -8.0f), "1000.0000");
  EXPECT_EQ(QuantizedBits(F("fixed:8,4"), 4, 0, -0.0625f), "1111.1111");
  EXPECT_EQ(QuantizedBits(F("fixed:8,0"), 0, 0, -1.0f), "11111111");
  EXPECT_EQ(QuantizedBits(F("dps:3,2"), 2, 0, 1.75f), "001.11");
  EXPECT_EQ(QuantizedBits(F("int:4"), 0, 0.5, -3.5f), "1001");  // -7 steps of 0.5
  EXPECT_EQ(QuantizedBits(F("fixed:8,4"), 4, 0, NAN), "NaN");
}

struct CliRun {
  int code;
  std::string out, err;
};

CliRun Cli(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  std::ostringstream out, err;
  CliEnvironment env;
  env.out = &out;
  env.err = &err;
  // RunCli reads stdin from std::cin: give it our text.
  std::istringstream in(stdin_text);
  std::streambuf* old = std::cin.rdbuf(in.rdbuf());
  std::vector<std::string> argv = {"bitsweep"};
  argv.insert(argv.end(), args.begin(), args.end());
  const int code = RunCli(argv, env);
  std::cin.rdbuf(old);
  return {code, out.str(), err.str()};
}

TEST(QuantizeCommandTest, RawPrintsTheQuantisedValuesOnePerLine) {
  CliRun r = Cli({"quantize", "--format", "fp16", "--raw", "0.1", "65519", "1e6", "-1e-8", "nan"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "0.0999755859\n65504\n65504\n-0\nnan\n");
  EXPECT_EQ(r.err, "");
}

TEST(QuantizeCommandTest, ReadsStdinWhenNoValuesAreGiven) {
  CliRun r = Cli({"quantize", "--format", "mask:12", "--rounding", "truncate", "--raw"},
                 "1.3\n-1.3 2.9\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1.25\n-1.25\n2.75\n");
}

TEST(QuantizeCommandTest, NegativeValuesOnTheCommandLineAreValues) {
  CliRun r =
      Cli({"quantize", "--format", "fixed:8,2", "--rounding", "truncate", "--raw", "-0.1", "-1.3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "-0.25\n-1.5\n");
}

TEST(QuantizeCommandTest, TablePrintsInputOutputAndBits) {
  CliRun r = Cli({"quantize", "--format", "fixed:8,4", "1.53", "100"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("fixed:8,4, nearest\n"));
  EXPECT_THAT(r.out, HasSubstr("input  output  bits"));
  EXPECT_THAT(r.out, HasSubstr("1.52999997     1.5  0001.1000"));
  EXPECT_THAT(r.out, HasSubstr("100  7.9375  0111.1111"));
}

TEST(QuantizeCommandTest, StochasticFollowsTheSeedAsTheTrainerDoes) {
  // Value i gets the random bits the trainer's Apply(data, n, seed) gives element i.
  const trainer::Quantizer q(F("fp8e4m3"), trainer::Rounding::kStochastic);
  std::vector<float> want(50, 0.3f);
  q.Apply(want.data(), 50, 42);
  std::string input, expected;
  int ups = 0;
  for (float v : want) {
    input += "0.3 ";
    expected += absl::StrFormat("%.9g\n", v);
    ups += v > 0.3f;
  }
  EXPECT_GT(ups, 5);  // both neighbours occur
  EXPECT_LT(ups, 45);
  CliRun r =
      Cli({"quantize", "--format", "fp8e4m3", "--rounding", "stochastic", "--seed", "42", "--raw"},
          input);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, expected);
  CliRun other =
      Cli({"quantize", "--format", "fp8e4m3", "--rounding", "stochastic", "--seed", "43", "--raw"},
          input);
  EXPECT_NE(other.out, expected);
}

TEST(QuantizeCommandTest, DynamicFormatsShowTheirFractionalLength) {
  CliRun r = Cli({"quantize", "--format", "dynfixed:8", "5", "-0.3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("dynfixed:8, nearest, FL 4\n"));  // IL 4 holds 5
  EXPECT_THAT(r.out, HasSubstr("0101.0000"));
  CliRun i = Cli({"quantize", "--format", "int:4", "3.5", "-1"});
  EXPECT_THAT(i.out, HasSubstr("scale 0.5\n"));
  EXPECT_THAT(i.out, HasSubstr("0111"));
}

TEST(QuantizeCommandTest, BadInputIsExitCodeTwoWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::string stdin_text;
    const char* message;
  };
  const Case cases[] = {
      {{"quantize", "--format", "fp17", "1"}, "", "--format: 'fp17': unknown format"},
      {{"quantize", "--format", "fp16", "--rounding", "up", "1"}, "", "--rounding: 'up'"},
      {{"quantize", "--format", "fp16", "1", "x1"}, "", "value 2: 'x1' is not a number"},
      {{"quantize", "--format", "fp16"}, "  \n", "no values to quantise"},
      {{"quantize", "1"}, "", "--format is required"},
  };
  for (const Case& c : cases) {
    CliRun r = Cli(c.args, c.stdin_text);
    EXPECT_EQ(r.code, 2) << c.message;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace bitsweep::client
