#include "worker/trainer/analysis/noise_gain.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "worker/trainer/ops/conv.h"

namespace bitsweep::trainer {
namespace {

int Argmax(const float* z, int k) { return static_cast<int>(std::max_element(z, z + k) - z); }

double SquaredNorm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return s;
}

// |Wᵀ·δ|² for dense weights W [out, in] and δ [out].
double BackpropSquaredNorm(const std::vector<float>& w, const std::vector<float>& delta) {
  const size_t out = delta.size();
  const size_t in = out ? w.size() / out : 0;
  double s = 0;
  for (size_t j = 0; j < in; ++j) {
    double g = 0;
    for (size_t o = 0; o < out; ++o) g += double(w[o * in + j]) * delta[o];
    s += g * g;
  }
  return s;
}

}  // namespace

absl::StatusOr<NoiseGainReport> ComputeNoiseGains(Network& net, const v1::ModelConfig& model,
                                                  const float* images, int64_t n, int channels,
                                                  int height, int width) {
  if (n < 1) return absl::InvalidArgumentError("noise gains need at least one input");
  const int convs = model.conv_size();
  const int layers = convs + model.dense_size() + 1;
  std::vector<Param>& params = net.params();
  if (static_cast<int>(params.size()) != 2 * layers) {
    return absl::InvalidArgumentError(absl::StrCat("the network has ", params.size(),
                                                   " params, the model describes ", 2 * layers));
  }
  // The conv shapes as Network::Create builds them.
  std::vector<ConvShape> shapes;
  for (int l = 0, c = channels, h = height, w = width; l < convs; ++l) {
    const ConvShape s{c, h, w, model.conv(l), ConvKernel(model, l)};
    if (s.oh() < 1 || s.ow() < 1 ||
        static_cast<size_t>(s.weight_size()) != params[2 * l].value.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("conv", l, " does not match the network for ", c, "x", h, "x", w));
    }
    const int p = ConvPool(model, l);
    h = s.oh() / p;
    w = s.ow() / p;
    c = s.f;
    shapes.push_back(s);
  }
  NoiseGainReport report;
  for (int l = 0; l < layers; ++l) {
    LayerNoiseGains g;
    g.layer = l < convs         ? absl::StrCat("conv", l)
              : l == layers - 1 ? std::string("output")
                                : absl::StrCat("dense", l - convs);
    report.layers.push_back(g);
  }
  const int k = net.num_classes();
  const int64_t image_size = int64_t{channels} * height * width;
  SitePrecision fp32;
  std::vector<float> z(k), dz(k);
  std::vector<double> sum_a(layers, 0), sum_w(layers, 0);
  // Scratch for a conv next layer: its input gradient (and the unused weight gradients).
  std::vector<float> conv_in, conv_din, conv_dw, conv_db;
  for (int64_t x = 0; x < n; ++x) {
    const float* logits = net.Forward(images + x * image_size, 1, fp32, 0);
    std::copy(logits, logits + k, z.begin());
    const int top = Argmax(z.data(), k);
    for (int i = 0; i < k; ++i) {
      if (i == top) continue;
      const double d = double(z[i]) - z[top];
      if (d == 0) {
        ++report.skipped_ties;
        continue;
      }
      std::fill(dz.begin(), dz.end(), 0.0f);
      dz[i] = 1;
      dz[top] = -1;
      net.Backward(dz.data(), 1, fp32, 0);  // d(Z_i − Z_ŷ)/d(everything)
      const double scale = 1.0 / (24.0 * d * d);
      for (int l = 0; l < layers; ++l) {
        sum_w[l] += scale * (SquaredNorm(params[2 * l].grad) + SquaredNorm(params[2 * l + 1].grad));
        if (l == layers - 1) {
          sum_a[l] += scale * 2.0;  // |e_i − e_ŷ|²
        } else if (l + 1 < convs) {
          // The next layer is a conv: ∂D/∂(its input) = col2im(Wᵀ·δ), δ per position.
          const ConvShape& next = shapes[l + 1];
          conv_in.assign(next.in_size(), 0.0f);
          conv_din.resize(next.in_size());
          conv_dw.resize(next.weight_size());
          conv_db.resize(next.f);
          ConvBackward(next, 1, net.ConvPreActivationGradient(l + 1), conv_in.data(),
                       params[2 * (l + 1)].value.data(), conv_dw.data(), conv_db.data(),
                       conv_din.data());
          sum_a[l] += scale * SquaredNorm(conv_din);
        } else {
          // The next layer is dense: ∂D/∂h = Wᵀ·δ, δ its bias gradient (one example).
          sum_a[l] +=
              scale * BackpropSquaredNorm(params[2 * (l + 1)].value, params[2 * (l + 1) + 1].grad);
        }
      }
    }
  }
  for (int l = 0; l < layers; ++l) {
    report.layers[l].weights = sum_w[l] / double(n);
    report.layers[l].activations = sum_a[l] / double(n);
  }
  report.inputs = n;
  return report;
}

std::vector<int> ActivationIntegerBits(Network& net, const float* images, int64_t n,
                                       int64_t image_size) {
  const int layers = net.num_layers();
  constexpr int kMaxIntegerBits = 31;
  std::vector<int> bits(layers, -1);
  const int batch = net.max_batch();
  for (int integer = 0; integer < kMaxIntegerBits; ++integer) {
    const std::string format = absl::StrCat("fixed:32,", 31 - integer);
    v1::PrecisionConfig config;
    config.mutable_default_()->set_format(format);
    config.mutable_default_()->set_rounding("nearest");
    config.add_sites("activations");
    // One quantiser per layer, so that each layer's overflows are counted apart.
    for (int l = 0; l < layers; ++l) config.add_layers()->mutable_activations()->set_format(format);
    absl::StatusOr<SitePrecision> probe = MakeSitePrecision(config, layers);
    if (!probe.ok()) break;  // cannot happen for 0 <= integer < 31
    for (int l = 0; l < layers; ++l) probe->For(Site::kActivations, l).set_measure(true);
    for (int64_t start = 0; start < n; start += batch) {
      const int b = static_cast<int>(std::min<int64_t>(batch, n - start));
      net.Forward(images + start * image_size, b, *probe, 0);
    }
    bool all = true;
    for (int l = 0; l < layers; ++l) {
      SiteQuantizer& q = probe->For(Site::kActivations, l);
      q.EndIteration();
      if (bits[l] < 0 && q.last_iteration().overflows == 0) bits[l] = integer;
      all = all && bits[l] >= 0;
    }
    if (all) break;
  }
  for (int& b : bits) b = b < 0 ? kMaxIntegerBits : b;
  return bits;
}

std::vector<int> WeightIntegerBits(const Network& net) {
  std::vector<int> bits(net.num_layers(), 0);
  const std::vector<Param>& params = net.params();
  for (size_t i = 0; i < params.size(); ++i) {
    float max = 0;
    for (float v : params[i].value) max = std::max(max, std::abs(v));
    int b = 0;
    while (b < 31 && std::ldexp(1.0, b) <= max) ++b;  // range [−2^b, 2^b)
    bits[i / 2] = std::max(bits[i / 2], b);
  }
  return bits;
}

double MeasureMismatchRate(Network& net, const float* images, int64_t n, int64_t image_size,
                           SitePrecision& quantized, uint64_t key) {
  if (n < 1) return 0;
  const int k = net.num_classes();
  const int batch = net.max_batch();
  SitePrecision fp32;
  std::vector<int> reference(n);
  for (int64_t start = 0; start < n; start += batch) {
    const int b = static_cast<int>(std::min<int64_t>(batch, n - start));
    const float* z = net.Forward(images + start * image_size, b, fp32, 0);
    for (int j = 0; j < b; ++j) reference[start + j] = Argmax(z + int64_t{j} * k, k);
  }
  std::vector<std::vector<float>> saved;
  for (const Param& p : net.params()) saved.push_back(p.value);
  net.QuantizeWeights(quantized, key);  // per-layer weights formats included
  int64_t mismatches = 0;
  for (int64_t start = 0; start < n; start += batch) {
    const int b = static_cast<int>(std::min<int64_t>(batch, n - start));
    const float* z = net.Forward(images + start * image_size, b, quantized, key + start);
    for (int j = 0; j < b; ++j) mismatches += Argmax(z + int64_t{j} * k, k) != reference[start + j];
  }
  for (size_t i = 0; i < saved.size(); ++i) net.params()[i].value = std::move(saved[i]);
  return double(mismatches) / double(n);
}

}  // namespace bitsweep::trainer
