#include "server/sweep_expander.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/evp.h>

#include <limits>
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/bisect_search.h"
#include "server/config_patcher.h"
#include "server/pruning_rule.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::server {
namespace {

std::string ParameterPath(const std::string& path) {
  return absl::StrCat("sweep.parameters.", path);
}

// Seeds come from `seeds`, never from base or parameters, so that a sweep's repeats differ
// exactly in their seed.
absl::Status CheckNotSeed(const std::string& path, const std::string& where) {
  if (path == "seed") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the seed is not set directly; use sweep.seeds (seeds 0..seeds-1)"));
  }
  return absl::OkStatus();
}

std::string HexOf(const unsigned char* bytes, unsigned int size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 0xf]);
  }
  return hex;
}

}  // namespace

namespace {

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &digest_size, EVP_sha256(), nullptr);
  return HexOf(digest, digest_size);
}

template <typename Message>
std::string DeterministicBytes(const Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

// SplitMix64: a tiny, fully specified generator, so sampling is the same on every platform
// (std:: distributions are implementation-defined).
uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Grid points (product of the parameters' value counts), saturating at int64 max.
int64_t GridPoints(const v1::SweepSpec& spec) {
  int64_t points = 1;
  for (const v1::SweepParameter& parameter : spec.parameters()) {
    int64_t values = parameter.values().values_size();
    if (values == 0) return 0;
    if (points > std::numeric_limits<int64_t>::max() / values) {
      return std::numeric_limits<int64_t>::max();
    }
    points *= values;
  }
  return points;
}

// Robert Floyd's sampling of `samples` distinct indices in [0, points), sorted.
std::vector<int64_t> SampleIndices(int64_t points, int64_t samples, uint64_t key) {
  std::set<int64_t> chosen;
  uint64_t state = key;
  for (int64_t j = points - samples; j < points; ++j) {
    int64_t t = static_cast<int64_t>(SplitMix64(&state) % static_cast<uint64_t>(j + 1));
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  return std::vector<int64_t>(chosen.begin(), chosen.end());
}

// The grid position of linear index `linear` (last parameter fastest).
std::vector<int> DigitsOf(const v1::SweepSpec& spec, int64_t linear) {
  std::vector<int> index(spec.parameters_size(), 0);
  for (int p = spec.parameters_size() - 1; p >= 0; --p) {
    int64_t values = spec.parameters(p).values().values_size();
    index[p] = static_cast<int>(linear % values);
    linear /= values;
  }
  return index;
}

int AxisIndex(const v1::SweepSpec& spec) {
  for (int p = 0; p < spec.parameters_size(); ++p) {
    if (spec.parameters(p).path() == spec.bisect().axis()) return p;
  }
  return -1;
}

google::protobuf::Value Fp32Value() {
  google::protobuf::Value value;
  value.set_string_value("fp32");
  return value;
}

}  // namespace

std::string ConfigHash(const v1::TrialConfig& config) {
  return Sha256Hex(DeterministicBytes(config));
}

std::string SpecHash(const v1::SweepSpec& spec) { return Sha256Hex(DeterministicBytes(spec)); }

absl::StatusOr<int64_t> SweepExpander::CountTrials(const v1::SweepSpec& spec) const {
  if (const size_t bytes = spec.ByteSizeLong(); bytes > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep spec: ", bytes, " bytes exceed the limit of ", kMaxSpecBytes));
  }
  if (spec.name().empty()) return absl::InvalidArgumentError("name: must not be empty");
  if (spec.name().size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: longer than ", kMaxNameLength, " characters"));
  }
  const std::string method = spec.method().empty() ? "grid" : spec.method();
  if (method != "grid" && method != "random" && method != "bisect") {
    return absl::InvalidArgumentError(absl::StrCat(
        "sweep.method: '", spec.method(), "' is not supported (known: grid, random, bisect)"));
  }
  if (method != "random" && spec.samples() != 0) {
    return absl::InvalidArgumentError("sweep.samples: only for method random");
  }
  if (method != "bisect" && spec.has_bisect()) {
    return absl::InvalidArgumentError("sweep.bisect: only for method bisect");
  }
  RETURN_IF_ERROR(PruningRule::FromConfig(spec.pruning()).status());
  int64_t seeds = spec.seeds() == 0 ? 1 : spec.seeds();
  if (seeds < 1 || seeds > kMaxSeeds) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.seeds: ", spec.seeds(), " is not between 1 and ", kMaxSeeds));
  }
  std::set<std::string> paths;
  for (int i = 0; i < spec.parameters_size(); ++i) {
    const v1::SweepParameter& parameter = spec.parameters(i);
    if (parameter.path().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sweep.parameters[", i, "]: empty path"));
    }
    RETURN_IF_ERROR(CheckNotSeed(parameter.path(), ParameterPath(parameter.path())));
    if (!paths.insert(parameter.path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(ParameterPath(parameter.path()), ": listed more than once"));
    }
    if (parameter.values().values_size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(ParameterPath(parameter.path()), ": needs at least one value"));
    }
  }
  const int64_t points = GridPoints(spec);
  int64_t runs = points;  // grid points that may run (bisect: with the baselines)
  if (method == "random") {
    if (spec.samples() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sweep.samples: ", spec.samples(), " must be at least 1"));
    }
    if (spec.samples() > points) {
      return absl::InvalidArgumentError(absl::StrCat("sweep.samples: ", spec.samples(),
                                                     " exceeds the grid's ", points, " points"));
    }
    runs = spec.samples();
  } else if (method == "bisect") {
    if (spec.bisect().axis().empty()) {
      return absl::InvalidArgumentError("sweep.bisect.axis: missing (name a swept parameter)");
    }
    const int axis = AxisIndex(spec);
    if (axis < 0) {
      std::vector<std::string> swept(paths.begin(), paths.end());
      return absl::InvalidArgumentError(
          absl::StrCat("sweep.bisect.axis: '", spec.bisect().axis(),
                       "' is not a swept parameter (swept: ", absl::StrJoin(swept, ", "), ")"));
    }
    if (spec.bisect().tolerance() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sweep.bisect.tolerance: ", spec.bisect().tolerance(), " is negative"));
    }
    const int64_t values = spec.parameters(axis).values().values_size();
    runs = points == std::numeric_limits<int64_t>::max() ? points : points / values * (values + 1);
  }
  if (runs > options_.max_trials / seeds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sweep: ",
        runs == std::numeric_limits<int64_t>::max()
            ? std::string("more than ") + std::to_string(options_.max_trials)
            : std::to_string(runs * seeds),
        " trials exceed the limit of ", options_.max_trials, " (server flag --max-trials)"));
  }
  if (method == "bisect") {
    const int64_t values = spec.parameters(AxisIndex(spec)).values().values_size();
    return points / values * 2 * seeds;  // the baselines and the first probes
  }
  return runs * seeds;
}

absl::StatusOr<v1::TrialConfig> SweepExpander::ValidatedBase(const v1::SweepSpec& spec) const {
  v1::TrialConfig base = trainer::DefaultTrialConfig();
  if (spec.base().fields().count("seed") > 0) RETURN_IF_ERROR(CheckNotSeed("seed", "base.seed"));
  RETURN_IF_ERROR(ApplyStruct(spec.base(), "base", &base));
  if (absl::Status valid = trainer::ValidateTrialConfig(base); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("base.", valid.message()));
  }
  // Every value on its own over the base: wrong types and invalid values are reported with
  // the parameter path and the value's position before any combination is built.
  for (const v1::SweepParameter& parameter : spec.parameters()) {
    const std::string path = ParameterPath(parameter.path());
    for (int j = 0; j < parameter.values().values_size(); ++j) {
      const google::protobuf::Value& value = parameter.values().values(j);
      v1::TrialConfig config = base;
      RETURN_IF_ERROR(SetFieldAtPath(parameter.path(), value, "sweep.parameters.", &config));
      if (absl::Status valid = trainer::ValidateTrialConfig(config); !valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, "[", j, "] = ", ValueErrorText(value), ": ", valid.message()));
      }
    }
  }
  return base;
}

absl::StatusOr<PlannedTrial> SweepExpander::BuildPoint(
    const v1::SweepSpec& spec, const v1::TrialConfig& base, const std::vector<int>& index,
    int override_param, const google::protobuf::Value* override) const {
  PlannedTrial point;
  point.config = base;
  for (int p = 0; p < spec.parameters_size(); ++p) {
    const v1::SweepParameter& parameter = spec.parameters(p);
    const google::protobuf::Value& value =
        p == override_param ? *override : parameter.values().values(index[p]);
    RETURN_IF_ERROR(SetFieldAtPath(parameter.path(), value, "sweep.parameters.", &point.config));
    v1::TrialParam& param = point.params.emplace_back();
    param.set_path(parameter.path());
    param.set_value(ValueDisplayText(value));
  }
  // Values valid alone can still clash (e.g. kernels too large for the image).
  if (absl::Status valid = trainer::ValidateTrialConfig(point.config); !valid.ok()) {
    std::vector<std::string> assignment;
    for (const v1::TrialParam& param : point.params) {
      assignment.push_back(absl::StrCat(param.path(), "=", param.value()));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "sweep.parameters (", absl::StrJoin(assignment, ", "), "): ", valid.message()));
  }
  return point;
}

namespace {

void AddSeeds(const PlannedTrial& point, int64_t seeds, std::vector<PlannedTrial>* trials) {
  for (int64_t seed = 0; seed < seeds; ++seed) {
    PlannedTrial& trial = trials->emplace_back(point);
    trial.config.set_seed(static_cast<uint64_t>(seed));
    trial.config_hash = ConfigHash(trial.config);
  }
}

}  // namespace

absl::StatusOr<std::vector<PlannedTrial>> SweepExpander::Expand(const v1::SweepSpec& spec) const {
  ASSIGN_OR_RETURN(int64_t count, CountTrials(spec));
  const int64_t seeds = spec.seeds() == 0 ? 1 : spec.seeds();
  std::vector<PlannedTrial> trials;
  if (spec.method() == "bisect") {
    ASSIGN_OR_RETURN(std::vector<BisectGroup> groups, PlanBisect(spec));
    const BisectSearch search(spec.parameters(AxisIndex(spec)).values().values_size(),
                              spec.bisect().tolerance());
    trials.reserve(static_cast<size_t>(count));
    for (BisectGroup& group : groups) {
      for (PlannedTrial& trial : group.baseline) trials.push_back(std::move(trial));
      for (PlannedTrial& trial : group.probes[search.FirstProbe()]) {
        trials.push_back(std::move(trial));
      }
    }
    return trials;
  }
  ASSIGN_OR_RETURN(v1::TrialConfig base, ValidatedBase(spec));
  trials.reserve(static_cast<size_t>(count));
  if (spec.method() == "random") {
    // Keyed by the spec: the same spec draws the same points (idempotent resubmits).
    const std::string key_hex = SpecHash(spec).substr(0, 16);
    const uint64_t key = std::stoull(key_hex, nullptr, 16);
    for (int64_t linear : SampleIndices(GridPoints(spec), spec.samples(), key)) {
      ASSIGN_OR_RETURN(PlannedTrial point, BuildPoint(spec, base, DigitsOf(spec, linear)));
      AddSeeds(point, seeds, &trials);
    }
    return trials;
  }
  const int num_parameters = spec.parameters_size();
  std::vector<int> index(num_parameters, 0);  // odometer over the grid, last digit fastest
  while (true) {
    ASSIGN_OR_RETURN(PlannedTrial point, BuildPoint(spec, base, index));
    AddSeeds(point, seeds, &trials);
    int p = num_parameters - 1;
    while (p >= 0 && ++index[p] == spec.parameters(p).values().values_size()) index[p--] = 0;
    if (p < 0) break;
  }
  return trials;
}

absl::StatusOr<std::vector<SweepExpander::BisectGroup>> SweepExpander::PlanBisect(
    const v1::SweepSpec& spec) const {
  if (spec.method() != "bisect") {
    return absl::InvalidArgumentError("sweep.method: not bisect");
  }
  RETURN_IF_ERROR(CountTrials(spec).status());
  ASSIGN_OR_RETURN(v1::TrialConfig base, ValidatedBase(spec));
  const int axis = AxisIndex(spec);
  const google::protobuf::Value fp32 = Fp32Value();
  {
    v1::TrialConfig probe = base;
    absl::Status is_format = SetFieldAtPath(spec.bisect().axis(), fp32, "", &probe);
    if (!is_format.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sweep.bisect.axis: '", spec.bisect().axis(),
          "' is not a precision format (its fp32 baseline cannot be set: ", is_format.message(),
          ")"));
    }
  }
  const int64_t seeds = spec.seeds() == 0 ? 1 : spec.seeds();
  const int num_parameters = spec.parameters_size();
  const int num_values = spec.parameters(axis).values().values_size();
  std::vector<BisectGroup> groups;
  std::vector<int> index(num_parameters, 0);  // odometer over the other axes
  while (true) {
    BisectGroup& group = groups.emplace_back();
    ASSIGN_OR_RETURN(PlannedTrial baseline, BuildPoint(spec, base, index, axis, &fp32));
    AddSeeds(baseline, seeds, &group.baseline);
    group.probes.resize(num_values);
    for (int v = 0; v < num_values; ++v) {
      index[axis] = v;
      ASSIGN_OR_RETURN(PlannedTrial point, BuildPoint(spec, base, index));
      AddSeeds(point, seeds, &group.probes[v]);
    }
    index[axis] = 0;
    int p = num_parameters - 1;
    while (p >= 0 && (p == axis || ++index[p] == spec.parameters(p).values().values_size())) {
      if (p != axis) index[p] = 0;
      --p;
    }
    if (p < 0) break;
  }
  return groups;
}

absl::StatusOr<std::vector<PlannedTrial>> SweepExpander::NextBisectTrials(
    const v1::SweepSpec& spec, const std::vector<v1::Trial>& trials) const {
  ASSIGN_OR_RETURN(std::vector<BisectGroup> groups, PlanBisect(spec));
  std::map<std::string, const v1::Trial*> by_hash;
  for (const v1::Trial& trial : trials) by_hash[trial.config_hash()] = &trial;
  // Mean final accuracy of a finished group; nullopt while any of it is queued or running or
  // when it has not been planned. Failed runs count as accuracy 0: they are not a pass.
  enum class GroupState { kAbsent, kRunning, kFinished };
  auto state_of = [&](const std::vector<PlannedTrial>& group, double* mean) {
    bool any_present = false;
    double sum = 0;
    for (const PlannedTrial& planned : group) {
      auto it = by_hash.find(planned.config_hash);
      if (it == by_hash.end()) continue;
      any_present = true;
      v1::TrialState state = it->second->state();
      if (state == v1::TRIAL_STATE_QUEUED || state == v1::TRIAL_STATE_RUNNING) {
        return GroupState::kRunning;
      }
      if (state == v1::TRIAL_STATE_DONE) sum += it->second->result().final_test_accuracy();
    }
    if (!any_present) return GroupState::kAbsent;
    *mean = sum / static_cast<double>(group.size());
    return GroupState::kFinished;
  };
  const BisectSearch search(spec.parameters(AxisIndex(spec)).values().values_size(),
                            spec.bisect().tolerance());
  std::vector<PlannedTrial> next;
  for (BisectGroup& group : groups) {
    double baseline = 0;
    if (state_of(group.baseline, &baseline) != GroupState::kFinished) continue;
    std::map<int, double> probed;
    bool waiting = false;
    for (int v = 0; v < static_cast<int>(group.probes.size()) && !waiting; ++v) {
      double mean = 0;
      GroupState state = state_of(group.probes[v], &mean);
      if (state == GroupState::kRunning) waiting = true;
      if (state == GroupState::kFinished) probed[v] = mean;
    }
    if (waiting) continue;
    BisectSearch::Step step = search.Next(baseline, probed);
    if (!step.probe) continue;
    for (PlannedTrial& trial : group.probes[*step.probe]) {
      if (by_hash.count(trial.config_hash) == 0) next.push_back(std::move(trial));
    }
  }
  return next;
}

}  // namespace bitsweep::server
