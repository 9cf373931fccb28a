#include "worker/trainer/quant/sites.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config) {
  auto format = ParseFormat(config.default_().format());
  if (!format.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("precision.default.format: ", format.status().message()));
  }
  auto rounding = ParseRounding(config.default_().rounding());
  if (!rounding.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("precision.default.rounding: ", rounding.status().message()));
  }
  const Quantizer quantizer(*format, *rounding);
  SitePrecision sites;
  std::set<std::string> seen;
  for (int i = 0; i < config.sites_size(); ++i) {
    const std::string& name = config.sites(i);
    const std::string path = absl::StrCat("precision.sites[", i, "]: '", name, "': ");
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, "listed twice"));
    }
    if (name == "weights") {
      sites.weights = quantizer;
    } else if (name == "activations") {
      sites.activations = quantizer;
    } else if (name == "errors") {
      sites.errors = quantizer;
    } else if (name == "gradients" || name == "optimizer" || name == "accumulator") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "site not supported yet; supported: weights, activations, errors"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "unknown site; supported: weights, activations, errors"));
    }
  }
  return sites;
}

}  // namespace bitsweep::trainer
