// The CLI's optional config file: defaults an operator sets once per machine instead of
// exporting variables in every shell. YAML, e.g.
//   server: coordinator.example.org:50051
// Precedence of every setting: flag > environment variable > config file > built-in default.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace bitsweep::client {

struct CliConfig {
  // host:port of bitsweep-server; empty when the file does not set it.
  std::string server;
};

// Reads the file at `path`. Errors: NotFound (no such file); InvalidArgument (not YAML, not a
// mapping, an unknown key, or a value of the wrong type; the message names the file and key).
absl::StatusOr<CliConfig> ReadCliConfig(const std::string& path);

// Where the config file is looked for: $BITSWEEP_CONFIG when set (`explicit_path` true: a
// missing file is then an error), else $XDG_CONFIG_HOME/bitsweep/config.yaml, else
// $HOME/.config/bitsweep/config.yaml; empty when none of these variables is set.
std::string CliConfigPath(bool* explicit_path);

}  // namespace bitsweep::client
