#include "worker/trainer/analysis/gradient_retention.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {
namespace {

// The weight gradients of every parameter layer after one forward-backward pass of the batch.
std::vector<std::vector<float>> WeightGradients(Network& net, const float* images,
                                                const uint8_t* labels, int n, Loss loss,
                                                SitePrecision& precision, uint64_t key) {
  const int k = net.num_classes();
  const float* logits = net.Forward(images, n, precision, key);
  std::vector<float> dlogits(static_cast<size_t>(n) * k);
  LossForwardBackward(loss, n, k, logits, labels, 1.0f / static_cast<float>(n), dlogits.data(),
                      nullptr);
  net.Backward(dlogits.data(), n, precision, key);
  std::vector<std::vector<float>> grads;
  for (int l = 0; l < net.num_layers(); ++l) grads.push_back(net.params()[2 * l].grad);
  return grads;
}

}  // namespace

absl::StatusOr<std::vector<LayerGradientRetention>> MeasureGradientRetention(
    Network& net, const float* images, const uint8_t* labels, int n, Loss loss,
    SitePrecision& accumulator, uint64_t key) {
  if (n < 1 || n > net.max_batch()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient retention: batch of ", n, " not in 1..", net.max_batch()));
  }
  bool any = false;
  for (int l = 0; l < net.num_layers(); ++l) any = any || accumulator.AccumulatorFor(l) != nullptr;
  if (!any) {
    return absl::InvalidArgumentError(
        "gradient retention: the precision rounds no accumulation (list the accumulator site "
        "with a format other than fp32)");
  }
  SitePrecision fp32;
  const std::vector<std::vector<float>> exact =
      WeightGradients(net, images, labels, n, loss, fp32, 0);
  const std::vector<std::vector<float>> rounded =
      WeightGradients(net, images, labels, n, loss, accumulator, key);
  std::vector<LayerGradientRetention> layers;
  for (int l = 0; l < net.num_layers(); ++l) {
    double gg = 0, hh = 0, gh = 0;
    for (size_t i = 0; i < exact[l].size(); ++i) {
      const double g = exact[l][i], h = rounded[l][i];
      gg += g * g;
      hh += h * h;
      gh += g * h;
    }
    LayerGradientRetention r;
    r.layer = net.LayerName(l);
    r.retention = gg > 0 ? hh / gg : 1.0;
    r.cosine = gg > 0 && hh > 0 ? gh / std::sqrt(gg * hh) : (gg == hh ? 1.0 : 0.0);
    layers.push_back(r);
  }
  return layers;
}

}  // namespace bitsweep::trainer
