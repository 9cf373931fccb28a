#include "analysis/accumulator_width.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace bitsweep::analysis {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Standard normal by Box-Muller (portable, unlike std::normal_distribution).
double Normal(uint64_t& state) {
  const double u1 = (double(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = double(SplitMix64(state) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace

double TruncateToMantissa(double x, int mantissa_bits) {
  if (x == 0 || !std::isfinite(x)) return x;
  int exp = 0;
  const double frac = std::frexp(x, &exp);  // x = frac · 2^exp, |frac| in [0.5, 1)
  // m explicit bits + the implicit one: m + 1 significant bits.
  const double scaled = std::ldexp(frac, mantissa_bits + 1);
  return std::ldexp(std::trunc(scaled), exp - mantissa_bits - 1);
}

absl::StatusOr<double> MonteCarloVrr(int mantissa_bits, int64_t n, const VrrOptions& options) {
  return MonteCarloVrr(mantissa_bits, Accumulation{n, 1}, options);
}

absl::StatusOr<double> MonteCarloVrr(int mantissa_bits, const Accumulation& sum,
                                     const VrrOptions& options) {
  if (mantissa_bits < 1 || mantissa_bits > 52) {
    return absl::InvalidArgumentError(
        absl::StrCat("accumulator mantissa bits ", mantissa_bits, " not in 1..52"));
  }
  if (sum.chain < 1) return absl::InvalidArgumentError("accumulation length must be >= 1");
  if (sum.groups < 1) return absl::InvalidArgumentError("accumulation groups must be >= 1");
  if (options.samples < 2) return absl::InvalidArgumentError("need >= 2 Monte-Carlo samples");
  uint64_t state = options.seed;
  double exact_ss = 0, rounded_ss = 0;
  for (int s = 0; s < options.samples; ++s) {
    double exact = 0, rounded = 0;
    for (int64_t g = 0; g < sum.groups; ++g) {
      double group = 0;
      for (int64_t i = 0; i < sum.chain; ++i) {
        const double p = Normal(state);
        exact += p;
        group = TruncateToMantissa(group + p, mantissa_bits);
      }
      rounded = g == 0 ? group : TruncateToMantissa(rounded + group, mantissa_bits);
    }
    exact_ss += exact * exact;
    rounded_ss += rounded * rounded;
  }
  return rounded_ss / exact_ss;
}

absl::StatusOr<int> MinAccumulatorMantissa(int64_t n, double min_vrr, const VrrOptions& options) {
  return MinAccumulatorMantissa(Accumulation{n, 1}, min_vrr, options);
}

absl::StatusOr<int> MinAccumulatorMantissa(const Accumulation& sum, double min_vrr,
                                           const VrrOptions& options) {
  if (!(min_vrr > 0 && min_vrr < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("minimum VRR ", min_vrr, " not in (0, 1)"));
  }
  int lo = 1, hi = 52;  // invariant: VRR(hi) >= min_vrr (52 bits: float64, assumed enough)
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    absl::StatusOr<double> v = MonteCarloVrr(mid, sum, options);
    if (!v.ok()) return v.status();
    if (*v >= min_vrr) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

absl::StatusOr<std::vector<LayerAccumulation>> AccumulationLengths(const v1::ModelConfig& model,
                                                                   int channels, int height,
                                                                   int width, int num_classes,
                                                                   int batch, int conv_group) {
  if (batch < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  if (conv_group < 1) return absl::InvalidArgumentError("conv example group must be >= 1");
  std::vector<LayerAccumulation> layers;
  int64_t c = channels, h = height, w = width;
  for (int l = 0; l < model.conv_size(); ++l) {
    const int64_t k = model.kernels_size() > l ? model.kernels(l) : model.kernel();
    const int64_t p = model.pools_size() > l ? model.pools(l) : model.pool();
    const int64_t f = model.conv(l);
    const int64_t oh = h - k + 1, ow = w - k + 1;
    if (k < 1 || oh < 1 || ow < 1 || p < 1 || oh / p < 1 || ow / p < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.conv: layer ", l, " has an empty output on ", h, "x", w, " inputs"));
    }
    const int64_t group = std::min<int64_t>(batch, conv_group);
    const int64_t groups = (batch + conv_group - 1) / conv_group;
    LayerAccumulation layer;
    layer.layer = absl::StrCat("conv", l);
    layer.forward = {c * k * k, 1};
    layer.backward = {f, 1};
    layer.gradient = {group * oh * ow, groups};
    layer.gradient_dot_product = int64_t{batch} * oh * ow;
    layers.push_back(layer);
    c = f;
    h = oh / p;
    w = ow / p;
  }
  int64_t in = c * h * w;
  for (int j = 0; j <= model.dense_size(); ++j) {
    const bool output = j == model.dense_size();
    const int64_t out = output ? num_classes : model.dense(j);
    LayerAccumulation layer;
    layer.layer = output ? std::string("output") : absl::StrCat("dense", j);
    layer.forward = {in, 1};
    layer.backward = {out, 1};
    layer.gradient = {batch, 1};
    layer.gradient_dot_product = batch;
    layers.push_back(layer);
    in = out;
  }
  return layers;
}

}  // namespace bitsweep::analysis
