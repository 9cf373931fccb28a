#include "proto/state_names.h"

namespace bitsweep::v1 {

std::string SweepStateName(SweepState state) {
  switch (state) {
    case SWEEP_STATE_QUEUED:
      return "queued";
    case SWEEP_STATE_RUNNING:
      return "running";
    case SWEEP_STATE_PAUSED:
      return "paused";
    case SWEEP_STATE_DONE:
      return "done";
    case SWEEP_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

std::string TrialStateName(TrialState state) {
  switch (state) {
    case TRIAL_STATE_QUEUED:
      return "queued";
    case TRIAL_STATE_RUNNING:
      return "running";
    case TRIAL_STATE_DONE:
      return "done";
    case TRIAL_STATE_FAILED:
      return "failed";
    case TRIAL_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

std::string TrialOutcomeName(TrialOutcome outcome) {
  switch (outcome) {
    case TRIAL_OUTCOME_COMPLETED:
      return "completed";
    case TRIAL_OUTCOME_DIVERGED:
      return "diverged";
    case TRIAL_OUTCOME_PRUNED:
      return "pruned";
    default:
      return "unknown";
  }
}

const std::vector<SweepState>& AllSweepStates() {
  static const std::vector<SweepState> states = {SWEEP_STATE_QUEUED, SWEEP_STATE_RUNNING,
                                                 SWEEP_STATE_PAUSED, SWEEP_STATE_DONE,
                                                 SWEEP_STATE_CANCELLED};
  return states;
}

const std::vector<TrialState>& AllTrialStates() {
  static const std::vector<TrialState> states = {TRIAL_STATE_QUEUED, TRIAL_STATE_RUNNING,
                                                 TRIAL_STATE_DONE, TRIAL_STATE_FAILED,
                                                 TRIAL_STATE_CANCELLED};
  return states;
}

}  // namespace bitsweep::v1
