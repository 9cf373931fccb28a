// Aggregation over seeds (DESIGN §8): trials of a sweep that differ only in their seed form a
// group, summarised by mean, std, 95% interval and n, with the outcomes counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/statistics.h"
#include "bitsweep/v1/sweep.pb.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace bitsweep::analysis {

// A swept value: parameter path and its value as text (as in v1::TrialParam).
struct ParamValue {
  std::string path;
  std::string value;
  friend bool operator==(const ParamValue&, const ParamValue&) = default;
  friend auto operator<=>(const ParamValue&, const ParamValue&) = default;
};

// One trial's numbers, as the analyses use them.
struct TrialSample {
  int64_t trial_id = 0;
  uint64_t seed = 0;
  double final_accuracy = 0;          // fraction in [0, 1]
  int64_t iterations_to_target = -1;  // -1: never reached
};

struct TrialGroup {
  std::vector<ParamValue> params;  // in the sweep's parameter order; the seed is not a param
  // Trials with a final accuracy: done and completed or diverged (a diverged trial's accuracy
  // is that of the broken model, a real outcome). Pruned trials stopped early: counted only.
  std::vector<TrialSample> samples;
  Summary final_accuracy;  // over samples
  int completed = 0, diverged = 0, pruned = 0, failed = 0, cancelled = 0, unfinished = 0;

  // The value of `path` in this group ("" when the group has no such parameter).
  const std::string& Value(const std::string& path) const;
};

// Groups `trials` by their params (order of first appearance), summarising final test accuracy.
std::vector<TrialGroup> GroupTrials(const google::protobuf::RepeatedPtrField<v1::Trial>& trials);
std::vector<TrialGroup> GroupTrials(const std::vector<v1::Trial>& trials);

// The swept parameter paths of `groups`, in order of first appearance.
std::vector<std::string> ParameterPaths(const std::vector<TrialGroup>& groups);

// `params` without the entries whose path is in `drop`.
std::vector<ParamValue> WithoutPaths(const std::vector<ParamValue>& params,
                                     const std::vector<std::string>& drop);

// "path=value, path=value" (last path component only, for tables).
std::string DescribeParams(const std::vector<ParamValue>& params);

}  // namespace bitsweep::analysis
