// The lower-case names of sweep states, trial states and trial outcomes ("queued", "done",
// "diverged", ...), shared by everything that shows or labels them: the CLI's tables and JSON,
// the server's /metrics labels and the dashboard API. One place, so they never disagree.
#pragma once

#include <string>
#include <vector>

#include "bitsweep/v1/config.pb.h"
#include "bitsweep/v1/sweep.pb.h"

namespace bitsweep::v1 {

// queued | running | paused | done | cancelled; "unknown" for UNSPECIFIED and unknown values.
std::string SweepStateName(SweepState state);
// queued | running | done | failed | cancelled; "unknown" otherwise.
std::string TrialStateName(TrialState state);
// completed | diverged | pruned; "unknown" otherwise.
std::string TrialOutcomeName(TrialOutcome outcome);

// Every named value, in lifecycle order (for tables and metrics that list each state, even at 0).
const std::vector<SweepState>& AllSweepStates();
const std::vector<TrialState>& AllTrialStates();

}  // namespace bitsweep::v1
