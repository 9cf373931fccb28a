// The bitsweep command line: argument parsing (CLI11), dispatch to the commands of commands.h,
// and the one place where errors become exit codes and a single line on stderr.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace bitsweep::client {

// What the process gives the CLI: its streams, terminal and environment.
struct CliEnvironment {
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // stdout is a terminal (progress redrawn in place).
  bool interactive = false;
  // Columns of the terminal; 0 = unlimited.
  int width = 0;
  // Default for --server (BITSWEEP_SERVER); empty means 127.0.0.1:50051.
  std::string default_server;
  // The optional config file (see cli_config.h), read when neither --server nor
  // BITSWEEP_SERVER is given. Empty: none. A missing file is ignored unless
  // `config_path_explicit` ($BITSWEEP_CONFIG named it); a bad file is a usage error.
  std::string config_path;
  bool config_path_explicit = false;
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration call_timeout = absl::Seconds(10);
  const common::Clock* clock = common::SystemClock::Get();
};

// Runs `bitsweep ARGS...` (args[0] is the program name) and returns the exit code:
// 0 ok; 1 the sweep has failed trials (watch, results); 2 usage or input error (bad arguments,
// bad sweep file, spec rejected by the server, no such sweep, other server errors);
// 3 server unreachable. Errors are printed as one line "bitsweep: error: MESSAGE" on `err`.
int RunCli(const std::vector<std::string>& args, const CliEnvironment& env);

// The exit code for a failed command: 3 for Unavailable (and DeadlineExceeded), else 2.
int ExitCodeForError(const absl::Status& status);

// Reads the terminal of this process: whether stdout is a TTY, its width (COLUMNS, else the
// TTY's size, else unlimited), BITSWEEP_SERVER and where the config file is (CliConfigPath).
CliEnvironment DetectEnvironment();

}  // namespace bitsweep::client
