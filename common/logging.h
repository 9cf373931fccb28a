// One named spdlog logger per process, set up once in main().
#pragma once

#include <spdlog/formatter.h>

#include <memory>
#include <string>

#include "absl/status/status.h"

namespace bitsweep::common {

// How log lines look: `kText` for people, `kJson` for log collectors (one JSON object a
// line: {"time","level","logger","msg"}, the message escaped).
enum class LogFormat { kText, kJson };

// Parses "text" or "json". Errors: InvalidArgument naming --log-format.
absl::Status ParseLogFormat(const std::string& text, LogFormat* format);

// The formatter for `format`; SetupLogging installs it, tests apply it to their own sinks.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// Installs a stderr logger called `process_name` as spdlog's default.
// `level` is trace|debug|info|warn|error|off. Errors: InvalidArgument (unknown level).
absl::Status SetupLogging(const std::string& process_name, const std::string& level,
                          LogFormat format = LogFormat::kText);

}  // namespace bitsweep::common
