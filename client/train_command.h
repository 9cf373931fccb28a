// `bitsweep train`: runs one trial locally with the trainer library (no server, no worker):
//
//   bitsweep train CONFIG.yaml [--set path=value ...] [--threads N] [--json] [--data-dir DIR]
//
// CONFIG.yaml is a trial config (the `base:` shape of DESIGN §3) or a whole sweep file, of which
// only `base` is used. It is applied over trainer::DefaultTrialConfig(), then every --set (the
// dotted paths of sweep parameters, e.g. precision.default.format=mask:12), then validated.
// Progress goes to stderr: a bar redrawn in place on a terminal, else one line per evaluation.
// The result goes to stdout: a summary, or with --json {"config", "result", "curve"}.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"

namespace CLI {
class App;
}

namespace bitsweep::client {

struct TrainRequest {
  std::string config_path;
  std::vector<std::string> sets;  // "path=value", applied in order
  int threads = 1;
  bool json = false;
  std::string data_dir = "var/data";  // as bitsweep-worker's --data-dir
};

// The trial config of YAML `text` (a bare trial config, or a sweep file whose `base` is used)
// over the defaults, with `sets` applied, validated. `source` names the text in errors.
// Errors: InvalidArgument: YAML errors as "SOURCE:LINE:COL: ..."; "SOURCE: model.convs: unknown
// field (known: ...)"; "--set model.conv=abc: ..."; and the trainer's validation
// ("train.batch_size: ..."), each naming the field path.
absl::StatusOr<v1::TrialConfig> TrainConfigFromYaml(std::string_view text, std::string_view source,
                                                    const std::vector<std::string>& sets);

// Reads the file at `path` and calls TrainConfigFromYaml.
// Errors: NotFound (unreadable file), else as TrainConfigFromYaml.
absl::StatusOr<v1::TrialConfig> LoadTrainConfig(const std::string& path,
                                                const std::vector<std::string>& sets);

// Runs the trial: loads the dataset from request.data_dir, trains with request.threads,
// reports progress on `err` (redrawn in place when `err_is_tty`) and the result on `out`.
// Errors: as LoadTrainConfig; the dataset's errors (NotFound, DataLoss naming the file); the
// trainer's (InvalidArgument naming the field).
absl::Status RunTrain(const TrainRequest& request, std::ostream& out, std::ostream& err,
                      bool err_is_tty);

// Registers `train` on the CLI (see quantize_command.h's AddQuantizeCommand).
using LocalRun = std::function<absl::StatusOr<int>()>;
void AddTrainCommand(CLI::App& app, std::ostream* out, std::ostream* err, bool err_is_tty,
                     const std::function<void(LocalRun)>& set_run);

}  // namespace bitsweep::client
