// `bitsweep predict`: seed 001's and seed 003's predictions for a model before spending compute
// on a sweep (no server needed):
//
//   bitsweep predict CONFIG.yaml [--target-pm 0.01] [--inputs 500] [--json] [--data-dir DIR]
//                    [--set path=value ...] [--checkpoint FILE]
//
// Trains the config's model in float32 locally (plain SGD with the config's lr and momentum;
// the config's precision is ignored), then on the first --inputs test images computes the
// noise gains E_A and E_W per layer (worker/trainer/analysis/noise_gain.h), the mismatch bound
// for every uniform B, the predicted minimum uniform B and the per-layer assignment for
// --target-pm (analysis/mismatch_bound.h), and measures the actual mismatch rate of the
// fixed-point network at each B on the test set (weights fixed:B,B-1 and activations
// fixed:B+6,B-1: the same step 2^(1-B) as the bound, with integer bits so activations do
// not saturate). Then seed 003's minimum accumulator mantissa per layer and GEMM.
// --checkpoint is not supported yet: the trainer has no public API to load a checkpoint's
// weights into a Network; the command says so.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace CLI {
class App;
}

namespace bitsweep::client {

struct PredictRequest {
  std::string config_path;
  std::vector<std::string> sets;
  std::string checkpoint;
  double target_pm = 0.01;
  int64_t inputs = 500;  // test images for the noise gains (0 = all)
  double min_vrr = 0.99;
  bool json = false;
  std::string data_dir = "var/data";
};

// Errors: as LoadTrainConfig; the dataset's; Unimplemented for --checkpoint; InvalidArgument
// for a target outside (0, 1].
absl::Status RunPredict(const PredictRequest& request, std::ostream& out, std::ostream& err);

using LocalRun = std::function<absl::StatusOr<int>()>;
void AddPredictCommand(CLI::App& app, std::ostream* out, std::ostream* err,
                       const std::function<void(LocalRun)>& set_run);

}  // namespace bitsweep::client
