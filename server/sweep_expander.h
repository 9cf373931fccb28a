// SweepExpander: validates a SweepSpec and expands it into its trials (DESIGN §2-§3): the
// trainer's default config, with `base` applied, then every point of the grid (cartesian
// product of the parameters' values, in file order, the last parameter varying fastest),
// each repeated with seeds 0..seeds-1. `method: random` draws `samples` grid points (without
// replacement, deterministically from a hash of the spec, kept in grid order); `method: bisect`
// starts with the fp32 baseline and the middle probe of the axis for every combination of the
// other axes, and plans the next probes as groups finish (PlanBisect, BisectSearch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
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
  // Largest serialized spec: a grid of 100,000 trials needs a few KB; the cap keeps one
  // submission from storing megabytes of `base` or value lists (docs/security.md).
  static constexpr size_t kMaxSpecBytes = 1 << 20;

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

  // Every trial a bisect sweep may run, per combination of the other axes.
  struct BisectGroup {
    // The combination's fp32 baseline, one per seed.
    std::vector<PlannedTrial> baseline;
    // [axis value index][seed], values ordered as listed (fewest to most bits).
    std::vector<std::vector<PlannedTrial>> probes;
  };
  // Errors: as Expand (and "sweep.bisect.axis: ..." when the axis is not swept or not a
  // precision format).
  absl::StatusOr<std::vector<BisectGroup>> PlanBisect(const v1::SweepSpec& spec) const;

  // The trials to add to a bisect sweep given its trials so far (matched by config hash):
  // for every combination whose baseline and latest probe have all finished, the next probe
  // of BisectSearch, unless the search is over. Errors: as PlanBisect.
  absl::StatusOr<std::vector<PlannedTrial>> NextBisectTrials(
      const v1::SweepSpec& spec, const std::vector<v1::Trial>& trials) const;

 private:
  // The default config with `base` applied, each parameter value checked alone over it.
  absl::StatusOr<v1::TrialConfig> ValidatedBase(const v1::SweepSpec& spec) const;
  // The grid point at `index` (seed unset); parameter `override_param` takes `override`
  // instead of its listed value (the bisect baseline).
  absl::StatusOr<PlannedTrial> BuildPoint(const v1::SweepSpec& spec, const v1::TrialConfig& base,
                                          const std::vector<int>& index, int override_param = -1,
                                          const google::protobuf::Value* override = nullptr) const;

  SweepExpanderOptions options_;
};

// Hex SHA-256 of the config's deterministic serialization (seed included).
std::string ConfigHash(const v1::TrialConfig& config);
// Hex SHA-256 of the spec's deterministic serialization: a sweep's identity.
std::string SpecHash(const v1::SweepSpec& spec);

}  // namespace bitsweep::server
