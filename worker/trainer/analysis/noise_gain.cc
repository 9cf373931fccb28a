#include "worker/trainer/analysis/noise_gain.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

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
                                                  const float* images, int64_t n,
                                                  int64_t image_size) {
  if (n < 1) return absl::InvalidArgumentError("noise gains need at least one input");
  const int convs = model.conv_size();
  const int layers = convs + model.dense_size() + 1;
  std::vector<Param>& params = net.params();
  if (static_cast<int>(params.size()) != 2 * layers) {
    return absl::InvalidArgumentError(absl::StrCat("the network has ", params.size(),
                                                   " params, the model describes ", 2 * layers));
  }
  NoiseGainReport report;
  for (int l = 0; l < layers; ++l) {
    LayerNoiseGains g;
    g.layer = l < convs         ? absl::StrCat("conv", l)
              : l == layers - 1 ? std::string("output")
                                : absl::StrCat("dense", l - convs);
    g.activations_known = l >= convs - 1;
    report.layers.push_back(g);
  }
  const int k = net.num_classes();
  SitePrecision fp32;
  std::vector<float> z(k), dz(k);
  std::vector<double> sum_a(layers, 0), sum_w(layers, 0);
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
        } else if (l >= convs - 1) {
          // The next layer is dense: ∂D/∂h = Wᵀ·δ, δ its bias gradient (one example).
          sum_a[l] +=
              scale * BackpropSquaredNorm(params[2 * (l + 1)].value, params[2 * (l + 1) + 1].grad);
        }
      }
    }
  }
  for (int l = 0; l < layers; ++l) {
    LayerNoiseGains& g = report.layers[l];
    g.weights = sum_w[l] / double(n);
    g.activations =
        g.activations_known ? sum_a[l] / double(n) : std::numeric_limits<double>::quiet_NaN();
  }
  report.inputs = n;
  return report;
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
