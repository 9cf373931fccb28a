// `bitsweep predict`: seed 001's and seed 003's predictions for a model before spending compute
// on a sweep, from a config locally (no server needed) or from a finished trial's kept weights:
//
//   bitsweep predict CONFIG.yaml|TRIAL [--target-pm 0.01] [--inputs 500] [--json]
//                    [--data-dir DIR] [--set path=value ...] [--checkpoint FILE]
//                    [--verify-sweep FILE [--submit]] [--record] [--sweep ID]
//
// The float32 model: trained locally from the config (plain SGD with the config's lr and
// momentum; the config's precision is ignored), or with --checkpoint the weights of a trainer
// checkpoint (trainer::CheckpointWeights; the config must describe the same model). Then, on the
// first --inputs test images, the noise gains E_A and E_W per layer
// (worker/trainer/analysis/noise_gain.h); each quantity's range [−2^I, 2^I) (weights from the
// model, activations over the test images); the bound for every uniform B with the range-scaled
// gains E·4^I; the predicted minimum uniform B and per-layer assignment for --target-pm
// (analysis/mismatch_bound.h); and the measured mismatch rate of the fixed-point network
// (weights and activations fixed:B,B−1−I per layer, round to nearest: the bound's step) at each
// B and for the assignment on the config's test images. Then seed 003's minimum accumulator
// mantissa per layer and GEMM.
// --verify-sweep FILE also writes the verifying sweep: the config as base (weights and
// activations sites, master weights fp32), one axis precision.layers over the fp32 baseline,
// uniform B−2..B+2 and the per-layer assignment, in the formats measured here. Submitted
// normally, its trials' accuracies sit next to the mismatch rates printed here.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/commands.h"
#include "client/sweep_client.h"
#include "client/train_command.h"

namespace CLI {
class App;
}

namespace bitsweep::client {

struct PredictRequest {
  std::string config_path;
  std::vector<std::string> sets;
  std::string checkpoint;    // a trainer checkpoint file (empty: train in fp32 here)
  std::string verify_sweep;  // where to write the verifying sweep (empty: not written)
  double target_pm = 0.01;
  int64_t inputs = 500;  // test images for the noise gains (0 = all)
  double min_vrr = 0.99;
  bool json = false;
  std::string data_dir = "var/data";
  // With a server (PredictCommand): record the prediction on `record_sweep`, else on the
  // trial's sweep, else on the sweep `submit` creates from the verify_sweep file.
  bool record = false;
  int64_t record_sweep = 0;
  bool submit = false;
};

// Errors: as LoadTrainConfig; the dataset's; InvalidArgument for a target outside (0, 1] and
// for a checkpoint that is corrupt or does not fit the config's model; NotFound for an
// unreadable checkpoint or unwritable --verify-sweep file.
absl::Status RunPredict(const PredictRequest& request, std::ostream& out, std::ostream& err);

// Whether `argument` (CONFIG_OR_TRIAL) is a trial id: digits only.
bool IsTrialId(const std::string& argument);
// Whether the request needs the server: a trial id, --record, --sweep or --submit.
bool NeedsServer(const PredictRequest& request);

// `predict TRIAL` and recording: the config of trial request.config_path (GetTrial, with
// request.sets applied) and the weights of its kept checkpoint (GetTrialCheckpoint), or a
// CONFIG and --checkpoint as RunPredict; then exactly RunPredict's pipeline and output. With
// submit, submits request.verify_sweep; then records the JSON prediction (RecordPrediction) on
// record_sweep, the submitted sweep, or (record) the trial's sweep. Progress goes to `err`.
// Errors: InvalidArgument (conflicting or incomplete options, before any work: --submit without
// --verify-sweep, --submit with --sweep, --record with nothing to record on, --checkpoint with
// a TRIAL); NotFound (no such trial, or it kept no checkpoint: the server's message names the
// option); Unavailable; and as RunPredict.
absl::StatusOr<int> PredictCommand(SweepClient& client, const PredictRequest& request,
                                   std::ostream& out, std::ostream& err);

// Registers `predict`: offline through `set_local_run`, or through `set_remote_run` when
// NeedsServer.
void AddPredictCommand(CLI::App& app, std::ostream* out, std::ostream* err,
                       const std::function<void(LocalRun)>& set_local_run,
                       const std::function<void(RemoteRun)>& set_remote_run);

}  // namespace bitsweep::client
