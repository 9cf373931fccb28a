#include "worker/trainer/quant/sites.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace bitsweep::trainer {
namespace {

// dynfixed's FL range: IL = WL - FL from WL - 52 (steps stay exact in double) to WL + 32.
constexpr int kDynFixedMinFrac = -32;
constexpr int kDynFixedMaxFrac = 52;
constexpr int kUnseen = -1000;

constexpr Site kAllSites[] = {Site::kWeights, Site::kActivations, Site::kErrors, Site::kGradients,
                              Site::kOptimizer};
constexpr char kSupportedSites[] =
    "weights, activations, errors, gradients, optimizer, accumulator";

// The accumulator rounds scalars one at a time: only element-wise static formats.
absl::Status CheckAccumulatorFormat(const Format& f, const std::string& path) {
  if (f.kind == FormatKind::kDynFixed || f.kind == FormatKind::kDps || f.kind == FormatKind::kInt) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", f.ToString(),
                     "' cannot be an accumulator format (its scale is per tensor); use fp32, "
                     "float:E,M, mask:B or fixed:WL,FL"));
  }
  return absl::OkStatus();
}

}  // namespace

int SiteIndex(Site site);

v1::PrecisionConfig ApplySwitch(const v1::PrecisionConfig& base, const v1::PrecisionConfig& sw) {
  v1::PrecisionConfig out = base;
  auto merge = [](const v1::SitePrecision& from, v1::SitePrecision* to) {
    if (!from.format().empty()) to->set_format(from.format());
    if (!from.rounding().empty()) to->set_rounding(from.rounding());
  };
  merge(sw.default_(), out.mutable_default_());
  merge(sw.weights(), out.mutable_weights());
  merge(sw.activations(), out.mutable_activations());
  merge(sw.errors(), out.mutable_errors());
  merge(sw.gradients(), out.mutable_gradients());
  merge(sw.optimizer(), out.mutable_optimizer());
  merge(sw.accumulator(), out.mutable_accumulator());
  if (sw.sites_size() > 0) *out.mutable_sites() = sw.sites();
  if (sw.layers_size() > 0) *out.mutable_layers() = sw.layers();
  if (sw.accumulator_chunk() > 0) out.set_accumulator_chunk(sw.accumulator_chunk());
  out.clear_schedule();
  return out;
}

absl::StatusOr<std::vector<ScheduledPrecision>> PrecisionSchedule(const v1::PrecisionConfig& config,
                                                                  int num_layers) {
  std::vector<ScheduledPrecision> out;
  v1::PrecisionConfig current = config;
  current.clear_schedule();
  RETURN_IF_ERROR(MakeSitePrecision(current, num_layers).status());
  out.push_back({0, current});
  for (int i = 0; i < config.schedule_size(); ++i) {
    const v1::PrecisionSwitch& sw = config.schedule(i);
    const std::string path = absl::StrCat("precision.schedule[", i, "]");
    if (sw.after_iteration() < 0) {
      return absl::InvalidArgumentError(path + ".after_iteration: must not be negative");
    }
    if (sw.after_iteration() <= out.back().from_iteration && i > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".after_iteration: ", sw.after_iteration(),
                       " must be greater than the previous switch's ", out.back().from_iteration));
    }
    if (sw.precision().schedule_size() > 0) {
      return absl::InvalidArgumentError(path + ".precision.schedule: switches do not nest");
    }
    current = ApplySwitch(current, sw.precision());
    if (auto made = MakeSitePrecision(current, num_layers); !made.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", made.status().message()));
    }
    if (sw.after_iteration() == 0) {
      out.back().config = current;  // replaces the initial precision
    } else {
      out.push_back({sw.after_iteration(), current});
    }
  }
  return out;
}

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
    case Site::kAccumulator:
      return "accumulator";
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
  Apply(tensor, data, n, key, nullptr);
}

bool SiteQuantizer::Apply(int tensor, float* data, int64_t n, uint64_t key, uint8_t* saturated) {
  const Format& f = base_.format();
  bool any = false;
  auto mark = [&](const Quantizer& q) {
    if (saturated != nullptr) any = q.MarkSaturated(data, n, saturated);
  };
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
    const Quantizer q(current, base_.rounding());
    mark(q);
    QuantStats s;
    q.ApplyMeasured(data, n, key, &s);
    state.stats.Add(s);
    iteration_.Add(s);
  } else if (f.kind == FormatKind::kDps) {
    Format current = f;
    current.int_bits = dps_il_;
    current.frac_bits = dps_fl_;
    const Quantizer q(current, base_.rounding());
    mark(q);
    q.ApplyMeasured(data, n, key, &iteration_);
  } else if (measure_) {
    mark(base_);
    base_.ApplyMeasured(data, n, key, &iteration_);
  } else if (saturated != nullptr) {
    any = base_.ApplyMarked(data, n, key, saturated);
  } else {
    base_.Apply(data, n, key);
  }
  return any;
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

SiteQuantizer::State SiteQuantizer::state() const {
  State s;
  s.dps_integer_bits = dps_il_;
  s.dps_frac_bits = dps_fl_;
  for (const auto& [tensor, t] : tensors_) s.dynfixed_frac_bits.emplace_back(tensor, t.frac_bits);
  s.last = last_;
  return s;
}

void SiteQuantizer::set_state(const State& state) {
  dps_il_ = state.dps_integer_bits;
  dps_fl_ = state.dps_frac_bits;
  tensors_.clear();
  for (const auto& [tensor, fl] : state.dynfixed_frac_bits) tensors_[tensor].frac_bits = fl;
  last_ = state.last;
  iteration_ = QuantStats();
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
    case Site::kAccumulator:
      return optimizer;
  }
  return weights;
}

int SiteIndex(Site site) { return static_cast<int>(site) - 1; }

SiteQuantizer& SitePrecision::For(Site site, int layer) {
  if (layer >= 0 && layer < static_cast<int>(layer_sites.size())) {
    std::optional<SiteQuantizer>& q = layer_sites[layer][SiteIndex(site)];
    if (q.has_value()) return *q;
  }
  return at(site);
}

const Quantizer* SitePrecision::AccumulatorFor(int layer) const {
  const Quantizer* q = &accumulator;
  if (layer >= 0 && layer < static_cast<int>(layer_accumulator.size()) &&
      layer_accumulator[layer].has_value()) {
    q = &*layer_accumulator[layer];
  }
  return q->enabled() ? q : nullptr;
}

std::vector<SiteQuantizer*> SitePrecision::all() {
  std::vector<SiteQuantizer*> out;
  for (Site s : kAllSites) out.push_back(&at(s));
  for (auto& layer : layer_sites) {
    for (std::optional<SiteQuantizer>& q : layer) {
      if (q.has_value()) out.push_back(&*q);
    }
  }
  return out;
}

void SitePrecision::EndIteration() {
  for (SiteQuantizer* q : all()) q->EndIteration();
}

void SitePrecision::set_measure(bool measure) {
  for (SiteQuantizer* q : all()) q->set_measure(measure);
}

absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config, int num_layers) {
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
  // The site-wide (format, rounding) of each listed site (index kNumSites: the accumulator).
  std::optional<std::pair<Format, Rounding>> site_formats[kNumSites + 1];
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
      auto fr = parse(config.accumulator(), "precision.accumulator", base->first, base->second);
      if (!fr.ok()) return fr.status();
      const char* where = config.accumulator().format().empty() ? "precision.default.format"
                                                                : "precision.accumulator.format";
      RETURN_IF_ERROR(CheckAccumulatorFormat(fr->first, where));
      sites.accumulator = Quantizer(fr->first, fr->second);
      sites.listed.push_back(Site::kAccumulator);
      site_formats[kNumSites] = *fr;
      format_paths.push_back(where);
      continue;
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
    site_formats[index] = *fr;
    sites.listed.push_back(kAllSites[index]);
    format_paths.push_back(overrides[index]->format().empty()
                               ? std::string("precision.default.format")
                               : absl::StrCat("precision.", name, ".format"));
  }
  for (int s = 0; s <= kNumSites; ++s) {
    const char* name = s < kNumSites ? SiteName(kAllSites[s]) : "accumulator";
    const v1::SitePrecision& o = s < kNumSites ? *overrides[s] : config.accumulator();
    if ((!o.format().empty() || !o.rounding().empty()) && !seen.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("precision.", name, ".", o.format().empty() ? "rounding" : "format",
                       ": set, but '", name, "' is not listed in precision.sites"));
    }
  }
  if (config.accumulator_chunk() < 0 || config.accumulator_chunk() > (1 << 20)) {
    return absl::InvalidArgumentError(
        "precision.accumulator_chunk: must be between 0 (one running sum) and 1048576");
  }
  sites.accumulator_chunk = config.accumulator_chunk();

  // Per-layer overrides.
  if (num_layers > 0 && config.layers_size() > num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("precision.layers: ", config.layers_size(), " entries but the model has ",
                     num_layers, " parameter layers (conv, hidden dense, output)"));
  }
  sites.layer_sites.resize(config.layers_size());
  sites.layer_accumulator.resize(config.layers_size());
  for (int l = 0; l < config.layers_size(); ++l) {
    const v1::LayerPrecision& lp = config.layers(l);
    const v1::SitePrecision* layer_overrides[] = {&lp.weights(),   &lp.activations(),
                                                  &lp.errors(),    &lp.gradients(),
                                                  &lp.optimizer(), &lp.accumulator()};
    const std::string prefix = absl::StrCat("precision.layers[", l, "]");
    {
      auto check = parse(lp.default_(), prefix + ".default", Format(), Rounding::kNearest);
      if (!check.ok()) return check.status();
    }
    for (int s = 0; s <= kNumSites; ++s) {
      const char* name = s < kNumSites ? SiteName(kAllSites[s]) : "accumulator";
      const v1::SitePrecision& own = *layer_overrides[s];
      const bool own_set = !own.format().empty() || !own.rounding().empty();
      const bool default_set = !lp.default_().format().empty() || !lp.default_().rounding().empty();
      if (!site_formats[s].has_value()) {
        if (own_set) {
          return absl::InvalidArgumentError(absl::StrCat(prefix, ".", name, ": set, but '", name,
                                                         "' is not listed in precision.sites"));
        }
        continue;
      }
      if (!own_set && !default_set) continue;
      // The layer's default over the site's own, then the layer's site over that.
      auto fr = parse(lp.default_(), prefix + ".default", site_formats[s]->first,
                      site_formats[s]->second);
      if (!fr.ok()) return fr.status();
      fr = parse(own, absl::StrCat(prefix, ".", name), fr->first, fr->second);
      if (!fr.ok()) return fr.status();
      if (s == kNumSites) {
        RETURN_IF_ERROR(CheckAccumulatorFormat(fr->first, prefix + ".accumulator.format"));
        sites.layer_accumulator[l] = Quantizer(fr->first, fr->second);
      } else {
        sites.layer_sites[l][s] = SiteQuantizer(fr->first, fr->second, dyn);
        dps_used |= fr->first.kind == FormatKind::kDps;
      }
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
      if (sites.listed[i] == Site::kAccumulator) continue;
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
