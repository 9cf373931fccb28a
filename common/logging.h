// One named spdlog logger per process, set up once in main().
#pragma once

#include <string>

#include "absl/status/status.h"

namespace bitsweep::common {

// Installs a stderr logger called `process_name` as spdlog's default.
// `level` is trace|debug|info|warn|error|off. Errors: InvalidArgument (unknown level).
absl::Status SetupLogging(const std::string& process_name, const std::string& level);

}  // namespace bitsweep::common
