// One trial of a sweep as the expander produces it and the store saves it.
#pragma once

#include <string>
#include <vector>

#include "bitsweep/v1/config.pb.h"
#include "bitsweep/v1/sweep.pb.h"

namespace bitsweep::server {

struct PlannedTrial {
  // The complete config, seed included (config.seed()).
  v1::TrialConfig config;
  // The swept values, in the sweep's parameter order, as display text.
  std::vector<v1::TrialParam> params;
  // Hex SHA-256 of the config's deterministic serialization: the trial's identity.
  std::string config_hash;
};

}  // namespace bitsweep::server
