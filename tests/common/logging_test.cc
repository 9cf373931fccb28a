// Log formats: JSON lines must parse whatever the message holds; text stays as it was.
#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/build_info.h"

namespace bitsweep::common {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Logs `messages` at info through a logger called "test" formatted as `format`.
std::string LogThrough(LogFormat format, const std::vector<std::string>& messages) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger("test", sink);
  logger.set_formatter(MakeLogFormatter(format));
  for (const std::string& message : messages) logger.info("{}", message);
  logger.warn("trial {} failed on '{}'", 7, "w1");
  return out.str();
}

TEST(LoggingTest, JsonFormat_EveryLineParsesAndKeepsTheMessage) {
  const std::vector<std::string> messages = {"plain",
                                             "quote \" and backslash \\",
                                             "two\nlines\r\n",
                                             "tab\tbell\a nul-free \x01",
                                             "utf-8: größe 精度",
                                             "{\"looks\": \"like json\"}"};
  const std::vector<std::string> lines = Lines(LogThrough(LogFormat::kJson, messages));
  ASSERT_EQ(lines.size(), messages.size() + 1) << "one line per message, newlines escaped";
  for (size_t i = 0; i < lines.size(); ++i) {
    nlohmann::json parsed = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << "not JSON: " << lines[i];
    EXPECT_EQ(parsed["logger"], "test");
    EXPECT_TRUE(parsed["time"].get<std::string>().ends_with("Z"));
    if (i < messages.size()) {
      EXPECT_EQ(parsed["msg"], messages[i]);
      EXPECT_EQ(parsed["level"], "info");
    } else {
      EXPECT_EQ(parsed["msg"], "trial 7 failed on 'w1'");
      EXPECT_EQ(parsed["level"], "warning");
    }
  }
}

TEST(LoggingTest, TextFormat_IsOneReadableLine) {
  const std::string text = LogThrough(LogFormat::kText, {"hello"});
  EXPECT_NE(text.find("info [test] hello\n"), std::string::npos) << text;
}

TEST(LoggingTest, ParseLogFormat_AcceptsTextAndJsonOnly) {
  LogFormat format = LogFormat::kText;
  EXPECT_TRUE(ParseLogFormat("json", &format).ok());
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("text", &format).ok());
  EXPECT_EQ(format, LogFormat::kText);
  absl::Status bad = ParseLogFormat("xml", &format);
  EXPECT_TRUE(absl::IsInvalidArgument(bad));
  EXPECT_NE(bad.message().find("--log-format"), std::string::npos);
}

TEST(BuildInfoTest, VersionLine_NamesProgramVersionCompilerAndBuildType) {
  const std::string line = VersionLine("bitsweep-server");
  EXPECT_EQ(line.rfind("bitsweep-server 0.", 0), 0u) << line;
  EXPECT_NE(line.find("(git "), std::string::npos) << line;
  EXPECT_NE(line.find("GNU"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace bitsweep::common
