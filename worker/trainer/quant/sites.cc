#include "worker/trainer/quant/sites.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {
namespace {

// dynfixed's FL range: IL = WL - FL from WL - 52 (steps stay exact in double) to WL + 32.
constexpr int kDynFixedMinFrac = -32;
constexpr int kDynFixedMaxFrac = 52;
constexpr int kUnseen = -1000;

constexpr Site kAllSites[] = {Site::kWeights, Site::kActivations, Site::kErrors, Site::kGradients,
                              Site::kOptimizer};
constexpr char kSupportedSites[] = "weights, activations, errors, gradients, optimizer";

}  // namespace

const char* SiteName(Site site) {
  switch (site) {
    case Site::kWeights:
      return "weights";
    case Site::kActivations:
      return "activations";
    case Site::kErrors:
      return "errors";
    case Site::kGradients:
      return "gradients";
    case Site::kOptimizer:
      return "optimizer";
  }
  return "?";
}

SiteQuantizer::SiteQuantizer(const Format& format, Rounding rounding, const DynamicOptions& options)
    : base_(format, rounding), options_(options) {
  if (format.kind == FormatKind::kDps) {
    dps_il_ = format.int_bits;
    dps_fl_ = format.frac_bits;
  }
}

void SiteQuantizer::Apply(int tensor, float* data, int64_t n, uint64_t key) {
  const Format& f = base_.format();
  if (f.kind == FormatKind::kDynFixed) {
    auto [it, added] = tensors_.try_emplace(tensor);
    TensorState& state = it->second;
    if (added) {
      // The smallest IL that holds max|x|: max < 2^e = 2^(IL-1).
      double max = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (std::isfinite(data[i])) max = std::max(max, std::fabs(double{data[i]}));
      }
      int e = 0;
      if (max > 0) std::frexp(max, &e);
      const int il = max > 0 ? e + 1 : 1;
      state.frac_bits = std::clamp(f.word_bits - il, kDynFixedMinFrac, kDynFixedMaxFrac);
    }
    Format current = f;
    current.frac_bits = state.frac_bits;
    QuantStats s;
    Quantizer(current, base_.rounding()).ApplyMeasured(data, n, key, &s);
    state.stats.Add(s);
    iteration_.Add(s);
  } else if (f.kind == FormatKind::kDps) {
    Format current = f;
    current.int_bits = dps_il_;
    current.frac_bits = dps_fl_;
    Quantizer(current, base_.rounding()).ApplyMeasured(data, n, key, &iteration_);
  } else if (measure_) {
    base_.ApplyMeasured(data, n, key, &iteration_);
  } else {
    base_.Apply(data, n, key);
  }
}

void SiteQuantizer::EndIteration() {
  const Format& f = base_.format();
  const DynamicOptions& o = options_;
  if (f.kind == FormatKind::kDynFixed) {
    for (auto& [tensor, state] : tensors_) {
      if (state.stats.values == 0) continue;
      // Courbariaux et al. 2014, §5: raise IL (lower FL) on overflow, keep it when one bit
      // fewer would overflow, else lower it.
      if (state.stats.overflow_rate() > o.max_overflow_rate) {
        --state.frac_bits;
      } else if (state.stats.overflow_rate_one_less() <= o.max_overflow_rate) {
        ++state.frac_bits;
      }
      state.frac_bits = std::clamp(state.frac_bits, kDynFixedMinFrac, kDynFixedMaxFrac);
      state.stats = QuantStats();
    }
  } else if (f.kind == FormatKind::kDps && iteration_.values > 0) {
    // seeds/002_a5ea6972c7539976.txt, Algorithm 1.
    dps_il_ += iteration_.overflow_rate() > o.max_overflow_rate ? 1 : -1;
    dps_fl_ += iteration_.error_percent() > o.max_error_percent ? 1 : -1;
    dps_il_ = std::clamp(dps_il_, o.min_integer_bits, o.max_integer_bits);
    dps_fl_ = std::clamp(dps_fl_, o.min_frac_bits, o.max_frac_bits);
  }
  last_ = iteration_;
  iteration_ = QuantStats();
}

int SiteQuantizer::dynfixed_frac_bits(int tensor) const {
  auto it = tensors_.find(tensor);
  return it == tensors_.end() ? kUnseen : it->second.frac_bits;
}

SiteQuantizer& SitePrecision::at(Site site) {
  switch (site) {
    case Site::kWeights:
      return weights;
    case Site::kActivations:
      return activations;
    case Site::kErrors:
      return errors;
    case Site::kGradients:
      return gradients;
    case Site::kOptimizer:
      return optimizer;
  }
  return weights;
}

void SitePrecision::EndIteration() {
  for (Site s : kAllSites) at(s).EndIteration();
}

void SitePrecision::set_measure(bool measure) {
  for (Site s : kAllSites) at(s).set_measure(measure);
}

absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config) {
  auto parse = [](const v1::SitePrecision& sp, const std::string& path, const Format& base_format,
                  Rounding base_rounding) -> absl::StatusOr<std::pair<Format, Rounding>> {
    Format format = base_format;
    Rounding rounding = base_rounding;
    if (!sp.format().empty()) {
      auto f = ParseFormat(sp.format());
      if (!f.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ".format: ", f.status().message()));
      }
      format = *f;
    }
    if (!sp.rounding().empty()) {
      auto r = ParseRounding(sp.rounding());
      if (!r.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ".rounding: ", r.status().message()));
      }
      rounding = *r;
    }
    return std::make_pair(format, rounding);
  };
  auto base = parse(config.default_(), "precision.default", Format(), Rounding::kNearest);
  if (!base.ok()) return base.status();
  // The default's fields are required (an empty override means "the default's").
  if (config.default_().format().empty()) {
    return absl::InvalidArgumentError("precision.default.format: must be set");
  }
  if (config.default_().rounding().empty()) {
    return absl::InvalidArgumentError("precision.default.rounding: must be set");
  }

  const v1::DynamicPrecisionConfig& d = config.dynamic();
  DynamicOptions dyn;
  if (!(d.max_overflow_percent() >= 0 && d.max_overflow_percent() <= 100)) {
    return absl::InvalidArgumentError(
        "precision.dynamic.max_overflow_percent: must be in [0, 100]");
  }
  if (!(d.max_error_percent() >= 0 && std::isfinite(d.max_error_percent()))) {
    return absl::InvalidArgumentError(
        "precision.dynamic.max_error_percent: must be a finite number >= 0");
  }
  dyn.max_overflow_rate = d.max_overflow_percent() / 100.0;
  dyn.max_error_percent = d.max_error_percent();
  dyn.min_integer_bits = d.min_integer_bits();
  dyn.max_integer_bits = d.max_integer_bits();
  dyn.min_frac_bits = d.min_frac_bits();
  dyn.max_frac_bits = d.max_frac_bits();

  const v1::SitePrecision* overrides[] = {&config.weights(), &config.activations(),
                                          &config.errors(), &config.gradients(),
                                          &config.optimizer()};
  SitePrecision sites;
  std::set<std::string> seen;
  bool dps_used = false;
  std::vector<std::string> format_paths;  // where each listed site's format comes from
  for (int i = 0; i < config.sites_size(); ++i) {
    const std::string& name = config.sites(i);
    const std::string path = absl::StrCat("precision.sites[", i, "]: '", name, "': ");
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, "listed twice"));
    }
    if (name == "accumulator") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "site not supported yet; supported: ", kSupportedSites));
    }
    int index = -1;
    for (int s = 0; s < kNumSites; ++s) {
      if (name == SiteName(kAllSites[s])) index = s;
    }
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "unknown site; supported: ", kSupportedSites));
    }
    auto fr = parse(*overrides[index], absl::StrCat("precision.", name), base->first, base->second);
    if (!fr.ok()) return fr.status();
    dps_used |= fr->first.kind == FormatKind::kDps;
    sites.at(kAllSites[index]) = SiteQuantizer(fr->first, fr->second, dyn);
    sites.listed.push_back(kAllSites[index]);
    format_paths.push_back(overrides[index]->format().empty()
                               ? std::string("precision.default.format")
                               : absl::StrCat("precision.", name, ".format"));
  }
  for (int s = 0; s < kNumSites; ++s) {
    const char* name = SiteName(kAllSites[s]);
    const v1::SitePrecision& o = *overrides[s];
    if ((!o.format().empty() || !o.rounding().empty()) && !seen.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("precision.", name, ".", o.format().empty() ? "rounding" : "format",
                       ": set, but '", name, "' is not listed in precision.sites"));
    }
  }
  if (dps_used) {
    // Bounds only matter to dps: checked when it is used (configs without them stay valid).
    if (dyn.min_integer_bits < 1 || dyn.min_integer_bits > dyn.max_integer_bits ||
        dyn.max_integer_bits > 32) {
      return absl::InvalidArgumentError(
          "precision.dynamic.min_integer_bits: need 1 <= min_integer_bits <= max_integer_bits "
          "<= 32");
    }
    if (dyn.min_frac_bits < 0 || dyn.min_frac_bits > dyn.max_frac_bits) {
      return absl::InvalidArgumentError(
          "precision.dynamic.min_frac_bits: need 0 <= min_frac_bits <= max_frac_bits");
    }
    if (dyn.max_integer_bits + dyn.max_frac_bits > 53) {
      return absl::InvalidArgumentError(
          "precision.dynamic.max_frac_bits: max_integer_bits + max_frac_bits must be at most 53");
    }
    for (size_t i = 0; i < sites.listed.size(); ++i) {
      const Format& f = sites.at(sites.listed[i]).format();
      if (f.kind == FormatKind::kDps &&
          (f.int_bits < dyn.min_integer_bits || f.int_bits > dyn.max_integer_bits ||
           f.frac_bits < dyn.min_frac_bits || f.frac_bits > dyn.max_frac_bits)) {
        return absl::InvalidArgumentError(absl::StrCat(
            format_paths[i], ": '", f.ToString(),
            "': IL and FL must be within precision.dynamic's bounds [", dyn.min_integer_bits, ", ",
            dyn.max_integer_bits, "] and [", dyn.min_frac_bits, ", ", dyn.max_frac_bits, "]"));
      }
    }
  }
  return sites;
}

}  // namespace bitsweep::trainer
