// Builds v1::Trial messages for the analysis tests.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bitsweep/v1/sweep.pb.h"

namespace bitsweep::analysis {

// A done, completed trial with the given params, seed, final accuracy and iterations-to-target.
inline v1::Trial DoneTrial(const std::vector<std::pair<std::string, std::string>>& params,
                           uint64_t seed, double accuracy, int64_t iterations_to_target = -1) {
  static int64_t next_id = 1;
  v1::Trial t;
  t.set_id(next_id++);
  t.set_state(v1::TRIAL_STATE_DONE);
  t.set_seed(seed);
  for (const auto& [path, value] : params) {
    v1::TrialParam* p = t.add_params();
    p->set_path(path);
    p->set_value(value);
  }
  t.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  t.mutable_result()->set_final_test_accuracy(accuracy);
  t.mutable_result()->set_iterations_to_target(iterations_to_target);
  return t;
}

inline constexpr char kFormat[] = "precision.default.format";
inline constexpr char kRounding[] = "precision.default.rounding";

}  // namespace bitsweep::analysis
