#include "server/sweep_expander.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/evp.h>

#include <limits>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/config_patcher.h"
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

std::string ConfigHash(const v1::TrialConfig& config) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &digest_size, EVP_sha256(), nullptr);
  return HexOf(digest, digest_size);
}

absl::StatusOr<int64_t> SweepExpander::CountTrials(const v1::SweepSpec& spec) const {
  if (spec.name().empty()) return absl::InvalidArgumentError("name: must not be empty");
  if (spec.name().size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: longer than ", kMaxNameLength, " characters"));
  }
  if (!spec.method().empty() && spec.method() != "grid") {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.method: '", spec.method(), "' is not supported yet (use grid)"));
  }
  int64_t seeds = spec.seeds() == 0 ? 1 : spec.seeds();
  if (seeds < 1 || seeds > kMaxSeeds) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.seeds: ", spec.seeds(), " is not between 1 and ", kMaxSeeds));
  }
  std::set<std::string> paths;
  int64_t count = seeds;
  bool too_many = false;
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
    int64_t values = parameter.values().values_size();
    if (values == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(ParameterPath(parameter.path()), ": needs at least one value"));
    }
    // Saturate instead of overflowing: past the limit only "more than the limit" matters.
    if (too_many || count > std::numeric_limits<int64_t>::max() / values) {
      too_many = true;
    } else {
      count *= values;
    }
  }
  if (too_many || count > options_.max_trials) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sweep: ",
        too_many ? std::string("more than ") + std::to_string(options_.max_trials)
                 : std::to_string(count),
        " trials exceed the limit of ", options_.max_trials, " (server flag --max-trials)"));
  }
  return count;
}

absl::StatusOr<std::vector<PlannedTrial>> SweepExpander::Expand(const v1::SweepSpec& spec) const {
  ASSIGN_OR_RETURN(int64_t count, CountTrials(spec));
  const int64_t seeds = spec.seeds() == 0 ? 1 : spec.seeds();

  v1::TrialConfig base = trainer::DefaultTrialConfig();
  if (spec.base().fields().count("seed") > 0) RETURN_IF_ERROR(CheckNotSeed("seed", "base.seed"));
  RETURN_IF_ERROR(ApplyStruct(spec.base(), "base", &base));
  if (absl::Status valid = trainer::ValidateTrialConfig(base); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("base.", valid.message()));
  }

  // Every value on its own over the base: wrong types and invalid values are reported with
  // the parameter path and the value's position before any combination is built.
  const int num_parameters = spec.parameters_size();
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

  std::vector<PlannedTrial> trials;
  trials.reserve(static_cast<size_t>(count));
  std::vector<int> index(num_parameters, 0);  // odometer over the grid, last digit fastest
  while (true) {
    PlannedTrial point;
    point.config = base;
    for (int p = 0; p < num_parameters; ++p) {
      const v1::SweepParameter& parameter = spec.parameters(p);
      const google::protobuf::Value& value = parameter.values().values(index[p]);
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
    for (int64_t seed = 0; seed < seeds; ++seed) {
      PlannedTrial& trial = trials.emplace_back(point);
      trial.config.set_seed(static_cast<uint64_t>(seed));
      trial.config_hash = ConfigHash(trial.config);
    }
    int p = num_parameters - 1;
    while (p >= 0 && ++index[p] == spec.parameters(p).values().values_size()) index[p--] = 0;
    if (p < 0) break;
  }
  return trials;
}

}  // namespace bitsweep::server
