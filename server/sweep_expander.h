// SweepExpander: validates a SweepSpec and expands it into its trials (DESIGN §2-§3): the
// trainer's default config, with `base` applied, then every point of the grid (cartesian
// product of the parameters' values, in file order, the last parameter varying fastest),
// each repeated with seeds 0..seeds-1.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/sweep.pb.h"
#include "server/planned_trial.h"

namespace bitsweep::server {

struct SweepExpanderOptions {
  // Larger sweeps are rejected before anything is expanded.
  int64_t max_trials = 100'000;
};

class SweepExpander {
 public:
  static constexpr int kMaxNameLength = 200;
  static constexpr int kMaxSeeds = 1000;

  explicit SweepExpander(SweepExpanderOptions options = {}) : options_(options) {}
  SweepExpander(const SweepExpander&) = delete;
  SweepExpander& operator=(const SweepExpander&) = delete;

  // The trials of `spec`, in order. Stateless and thread-safe.
  // Errors: InvalidArgument naming the offending path, e.g.
  //   "base.model.convs: unknown field (known: ...)",
  //   "sweep.parameters.train.batch_size: value "abc" is not an integer",
  //   "sweep.parameters.precision.default.format[2] = "mask:40": precision.default.format: ...",
  //   "sweep: 120000 trials exceed the limit of 100000".
  absl::StatusOr<std::vector<PlannedTrial>> Expand(const v1::SweepSpec& spec) const;

  // Number of trials `spec` expands to, checking the spec's shape (name, method, seeds,
  // parameter paths and counts) but not the values. Errors: as Expand.
  absl::StatusOr<int64_t> CountTrials(const v1::SweepSpec& spec) const;

 private:
  SweepExpanderOptions options_;
};

// Hex SHA-256 of the config's deterministic serialization (seed included).
std::string ConfigHash(const v1::TrialConfig& config);

}  // namespace bitsweep::server
