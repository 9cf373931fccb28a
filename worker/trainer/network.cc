#include "worker/trainer/network.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/init.h"
#include "worker/trainer/ops/dense.h"
#include "worker/trainer/quant/rng.h"
#include "worker/trainer/tensor.h"

namespace bitsweep::trainer {
namespace {

// The clipped straight-through estimator (DESIGN §4; Hubara et al. 2016): the derivative of a
// clip is 0 outside the range, so a value the activations site saturated passes no error back.
// Passing it straight through makes the loss push the value ever further out of range.
template <typename T>
void ZeroWhereSaturated(const uint8_t* saturated, T* error, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (saturated[i] != 0) error[i] = 0;
  }
}

// fn(e) for every example, split between the threads of the current arena. Per-example work
// is independent, so the split does not change any result.
template <typename Fn>
void ForEachExample(int n, const Fn& fn) {
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, n, 4),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        for (int e = r.begin(); e < r.end(); ++e) fn(e);
      },
      oneapi::tbb::simple_partitioner());
}

// Stream-key tensor ids: conv block l is l, dense layer j (the output layer last) is 100 + j.
constexpr uint64_t kDenseTensorBase = 100;
// Init stream: DeriveKey(DeriveKey(seed, kInitTag), param index).
constexpr uint64_t kInitTag = 0x696E6974;  // "init"

template <typename T>
BasicParam<T> MakeParam(int64_t size) {
  BasicParam<T> p;
  p.value.assign(size, T(0));
  p.grad.assign(size, T(0));
  return p;
}

// The initial weights: the float32 draws for both scalar types, so that an fp64 run starts
// from exactly the weights of the fp32 run it is compared with.
void InitParam(const InitSpec& init, double scale, int64_t fan_in, int64_t fan_out, uint64_t key,
               float* w, int64_t n) {
  InitWeights(init, scale, fan_in, fan_out, key, w, n);
}
void InitParam(const InitSpec& init, double scale, int64_t fan_in, int64_t fan_out, uint64_t key,
               double* w, int64_t n) {
  std::vector<float> draws(n);
  InitWeights(init, scale, fan_in, fan_out, key, draws.data(), n);
  std::copy(draws.begin(), draws.end(), w);
}

AccumulatorRounding Accumulator(const SitePrecision& precision, int layer, uint64_t step_key) {
  AccumulatorRounding r;
  r.quantizer = precision.AccumulatorFor(layer);
  r.chunk = precision.accumulator_chunk;
  r.key = SiteKey(step_key, Site::kAccumulator, static_cast<uint64_t>(layer));
  return r;
}

}  // namespace

int ConvKernel(const v1::ModelConfig& model, int layer) {
  return layer < model.kernels_size() ? model.kernels(layer) : model.kernel();
}

int ConvPool(const v1::ModelConfig& model, int layer) {
  return std::max(layer < model.pools_size() ? model.pools(layer) : model.pool(), 1);
}

absl::Status CheckModelFits(const v1::ModelConfig& model, int height, int width) {
  int h = height, w = width;
  for (int l = 0; l < model.conv_size(); ++l) {
    const int k = ConvKernel(model, l);
    const int p = ConvPool(model, l);
    if (h - k + 1 < 1 || w - k + 1 < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.conv: conv layer ", l + 1, " gets a ", h, "x", w, " input, smaller than the ", k,
          "x", k, " kernel (model.kernel); use fewer conv layers, a smaller kernel or pool"));
    }
    h = h - k + 1;
    w = w - k + 1;
    if (p > 1 && (h / p < 1 || w / p < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.conv: conv layer ", l + 1, " outputs ", h, "x", w, ", smaller than the ", p, "x",
          p, " pool window (model.pool); use fewer conv layers, a smaller kernel or pool"));
    }
    h /= p;
    w /= p;
  }
  return absl::OkStatus();
}

int64_t EstimateNetworkBytes(const v1::ModelConfig& model, int channels, int height, int width,
                             int num_classes, int max_batch, int scalar_bytes) {
  int64_t floats = 0;
  int64_t mask_bytes = 0;  // the saturation marks, one byte per activation
  int c = channels, h = height, w = width;
  for (int l = 0; l < model.conv_size(); ++l) {
    const int p = ConvPool(model, l);
    const ConvShape conv{c, h, w, model.conv(l), ConvKernel(model, l)};
    if (conv.oh() < 1 || conv.ow() < 1) break;      // CheckModelFits reports it
    floats += 3 * conv.weight_size() + 3 * conv.f;  // value, grad, velocity
    floats += ConvGroupScratchSize(conv, max_batch) + 2 * ConvThreadScratchSize(conv);
    floats += 2 * conv.out_size() * max_batch;
    mask_bytes += conv.out_size() * max_batch;
    h = conv.oh();
    w = conv.ow();
    if (p > 1) {
      h /= p;
      w /= p;
      floats += 3 * int64_t{conv.f} * h * w * max_batch;  // pooled, dpooled, argmax
    }
    c = conv.f;
  }
  int64_t in = int64_t{c} * h * w;
  for (int j = 0; j <= model.dense_size(); ++j) {
    const int64_t out = j < model.dense_size() ? model.dense(j) : num_classes;
    floats += 3 * (in * out + out) + 2 * out * max_batch;
    mask_bytes += out * max_batch;
    in = out;
  }
  return floats * scalar_bytes + mask_bytes;
}

bool ApplyQuantizer(SiteQuantizer& q, int tensor, double* data, int64_t n, uint64_t key,
                    uint8_t* saturated) {
  if (!q.enabled()) {  // fp32 in a double network: no rounding (see network.h)
    if (saturated != nullptr) std::fill(saturated, saturated + n, uint8_t{0});
    return false;
  }
  thread_local std::vector<float> scratch;
  if (static_cast<int64_t>(scratch.size()) < n) scratch.resize(n);
  for (int64_t i = 0; i < n; ++i) scratch[i] = static_cast<float>(data[i]);
  const bool any = q.Apply(tensor, scratch.data(), n, key, saturated);
  for (int64_t i = 0; i < n; ++i) data[i] = scratch[i];
  return any;
}

template <typename T>
absl::StatusOr<std::unique_ptr<BasicNetwork<T>>> BasicNetwork<T>::Create(
    const v1::ModelConfig& model, int channels, int height, int width, int num_classes,
    int max_batch, uint64_t seed) {
  if (max_batch < 1) return absl::InvalidArgumentError("train.batch_size: must be at least 1");
  auto act = ParseActivation(model.activation());
  if (!act.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model.activation: ", act.status().message()));
  }
  auto init = ParseInit(model.init());
  if (!init.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model.init: ", init.status().message()));
  }
  if (absl::Status fits = CheckModelFits(model, height, width); !fits.ok()) return fits;
  const int64_t bytes = EstimateNetworkBytes(model, channels, height, width, num_classes, max_batch,
                                             static_cast<int>(sizeof(T)));
  if (bytes > kMaxNetworkBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model and train.batch_size need ", bytes >> 20, " MiB of weights and buffers, more than ",
        "the ", kMaxNetworkBytes >> 20, " MiB a trial may use; use a smaller model or batch"));
  }
  // Worker slots train concurrently; Eigen wants its static state set up before that.
  [[maybe_unused]] static const bool eigen_ready = (Eigen::initParallel(), true);
  std::unique_ptr<BasicNetwork> net(new BasicNetwork());
  net->activation_ = *act;
  net->num_classes_ = num_classes;
  net->max_batch_ = max_batch;
  net->input_size_ = int64_t{channels} * height * width;
  const uint64_t init_key = DeriveKey(seed, kInitTag);
  auto add_param = [&](int64_t size, int64_t fan_in, int64_t fan_out, bool is_bias) {
    BasicParam<T> p = MakeParam<T>(size);
    p.is_bias = is_bias;
    if (!is_bias) {
      InitParam(*init, model.init_scale(), fan_in, fan_out,
                DeriveKey(init_key, net->params_.size()), p.value.data(), size);
    }
    net->params_.push_back(std::move(p));
    return static_cast<int>(net->params_.size() - 1);
  };

  int c = channels, h = height, w = width;
  for (int l = 0; l < model.conv_size(); ++l) {
    const int k = ConvKernel(model, l);
    ConvBlock b;
    b.conv = ConvShape{c, h, w, model.conv(l), k};
    b.pool = PoolShape{b.conv.f, b.conv.oh(), b.conv.ow(), ConvPool(model, l)};
    b.weights = add_param(b.conv.weight_size(), b.conv.ckk(), int64_t{b.conv.f} * k * k, false);
    b.bias = add_param(b.conv.f, 0, 0, true);
    b.act.resize(b.conv.out_size() * max_batch);
    b.dact.resize(b.conv.out_size() * max_batch);
    b.saturated.resize(b.conv.out_size() * max_batch);
    if (b.pool.p > 1) {
      b.pooled.resize(b.pool.out_size() * max_batch);
      b.dpooled.resize(b.pool.out_size() * max_batch);
      b.argmax.resize(b.pool.out_size() * max_batch);
      h = b.pool.oh();
      w = b.pool.ow();
    } else {
      h = b.conv.oh();
      w = b.conv.ow();
    }
    c = b.conv.f;
    net->convs_.push_back(std::move(b));
  }
  int in = c * h * w;
  for (int j = 0; j <= model.dense_size(); ++j) {
    DenseLayer d;
    d.in = in;
    d.out = j < model.dense_size() ? model.dense(j) : num_classes;
    d.weights = add_param(int64_t{d.out} * d.in, d.in, d.out, false);
    d.bias = add_param(d.out, 0, 0, true);
    d.y.resize(int64_t{d.out} * max_batch);
    d.dy.resize(int64_t{d.out} * max_batch);
    d.saturated.resize(int64_t{d.out} * max_batch);
    in = d.out;
    net->dense_.push_back(std::move(d));
  }
  return net;
}

template <typename T>
int64_t BasicNetwork<T>::num_weights() const {
  int64_t total = 0;
  for (const BasicParam<T>& p : params_) total += static_cast<int64_t>(p.value.size());
  return total;
}

template <typename T>
const T* BasicNetwork<T>::Forward(const T* x, int n, SitePrecision& precision, uint64_t step_key) {
  input_ = x;
  const T* in = x;
  const int num_convs = static_cast<int>(convs_.size());
  for (size_t l = 0; l < convs_.size(); ++l) {
    ConvBlock& b = convs_[l];
    SiteQuantizer& qa = precision.For(Site::kActivations, static_cast<int>(l));
    const AccumulatorRounding acc = Accumulator(precision, static_cast<int>(l), step_key);
    // Pooled inside the conv pass while each example is in cache when the activations site
    // leaves the values as they are (fp32: it only measures them, below).
    const bool pool_in_conv = b.pool.p > 1 && !qa.enabled();
    if constexpr (std::is_same_v<T, float>) {
      // The activations themselves are needed only by a measured iteration's statistics and by
      // the unfused backward pass (another activation, or the accumulator site).
      const bool keep_act =
          qa.measuring() || activation_ != Activation::kRelu || acc.quantizer != nullptr;
      const PoolOutput pool{b.pool, b.pooled.data(), b.argmax.data(), keep_act};
      ConvForward(b.conv, n, in, params_[b.weights].value.data(), params_[b.bias].value.data(),
                  b.act.data(), &activation_, acc.quantizer != nullptr ? &acc : nullptr,
                  pool_in_conv ? &pool : nullptr);
    } else {  // no accumulator site in double (ValidateTrialConfig)
      ConvForward(b.conv, n, in, params_[b.weights].value.data(), params_[b.bias].value.data(),
                  b.act.data(), &activation_);
    }
    const int64_t size = n * b.conv.out_size();
    uint8_t* marks = qa.enabled() ? b.saturated.data() : nullptr;  // fp32: nothing clips
    b.any_saturated = ApplyQuantizer(qa, static_cast<int>(l), b.act.data(), size,
                                     SiteKey(step_key, Site::kActivations, l), marks);
    if (b.pool.p > 1) {
      if (!(std::is_same_v<T, float> && pool_in_conv)) {
        const int64_t in_size = b.pool.in_size(), out_size = b.pool.out_size();
        ForEachExample(n, [&](int e) {
          MaxPoolForward(b.pool, 1, b.act.data() + e * in_size, b.pooled.data() + e * out_size,
                         b.argmax.data() + e * out_size);
        });
      }
      in = b.pooled.data();
    } else {
      in = b.act.data();
    }
  }
  for (size_t j = 0; j < dense_.size(); ++j) {
    DenseLayer& d = dense_[j];
    const int layer = num_convs + static_cast<int>(j);
    SiteQuantizer& qa = precision.For(Site::kActivations, layer);
    const AccumulatorRounding acc = Accumulator(precision, layer, step_key);
    if constexpr (std::is_same_v<T, float>) {
      DenseForward(n, d.in, d.out, in, params_[d.weights].value.data(),
                   params_[d.bias].value.data(), d.y.data(),
                   acc.quantizer != nullptr ? &acc : nullptr);
    } else {
      DenseForward(n, d.in, d.out, in, params_[d.weights].value.data(),
                   params_[d.bias].value.data(), d.y.data());
    }
    const int64_t size = int64_t{n} * d.out;
    if (j + 1 < dense_.size()) ActivationForward(activation_, d.y.data(), size);
    uint8_t* marks = qa.enabled() ? d.saturated.data() : nullptr;
    d.any_saturated =
        ApplyQuantizer(qa, static_cast<int>(kDenseTensorBase + j), d.y.data(), size,
                       SiteKey(step_key, Site::kActivations, kDenseTensorBase + j), marks);
    in = d.y.data();
  }
  return in;
}

template <typename T>
void BasicNetwork<T>::Backward(T* dlogits, int n, SitePrecision& precision, uint64_t step_key) {
  // dout: the gradient w.r.t. the current layer's output, quantised as it arrives.
  T* dout = dlogits;
  const int num_convs = static_cast<int>(convs_.size());
  for (size_t jj = dense_.size(); jj-- > 0;) {
    DenseLayer& d = dense_[jj];
    const int layer = num_convs + static_cast<int>(jj);
    SiteQuantizer& qe = precision.For(Site::kErrors, layer);
    const AccumulatorRounding acc = Accumulator(precision, layer, step_key);
    const int64_t size = int64_t{n} * d.out;
    ApplyQuantizer(qe, static_cast<int>(kDenseTensorBase + jj), dout, size,
                   SiteKey(step_key, Site::kErrors, kDenseTensorBase + jj));
    if (d.any_saturated) ZeroWhereSaturated(d.saturated.data(), dout, size);
    if (jj + 1 < dense_.size()) ActivationBackward(activation_, d.y.data(), dout, size);
    const T* in;
    T* din;
    if (jj > 0) {
      in = dense_[jj - 1].y.data();
      din = dense_[jj - 1].dy.data();
    } else if (!convs_.empty()) {
      ConvBlock& b = convs_.back();
      in = b.pool.p > 1 ? b.pooled.data() : b.act.data();
      din = b.pool.p > 1 ? b.dpooled.data() : b.dact.data();
    } else {
      in = input_;
      din = nullptr;  // nobody needs the input's gradient
    }
    if constexpr (std::is_same_v<T, float>) {
      DenseBackward(n, d.in, d.out, dout, in, params_[d.weights].value.data(),
                    params_[d.weights].grad.data(), params_[d.bias].grad.data(), din,
                    acc.quantizer != nullptr ? &acc : nullptr);
    } else {
      DenseBackward(n, d.in, d.out, dout, in, params_[d.weights].value.data(),
                    params_[d.weights].grad.data(), params_[d.bias].grad.data(), din);
    }
    dout = din;
  }
  for (size_t l = convs_.size(); l-- > 0;) {
    ConvBlock& b = convs_[l];
    SiteQuantizer& qe = precision.For(Site::kErrors, static_cast<int>(l));
    const AccumulatorRounding acc = Accumulator(precision, static_cast<int>(l), step_key);
    ApplyQuantizer(qe, static_cast<int>(l), dout, n * b.out_size(),
                   SiteKey(step_key, Site::kErrors, l));
    // The first conv layer's input gradient is not needed.
    T* din = nullptr;
    if (l > 0) {
      ConvBlock& prev = convs_[l - 1];
      din = prev.pool.p > 1 ? prev.dpooled.data() : prev.dact.data();
    }
    const T* in = input_;
    if (l > 0)
      in = convs_[l - 1].pool.p > 1 ? convs_[l - 1].pooled.data() : convs_[l - 1].act.data();
    if constexpr (std::is_same_v<T, float>) {
      // Pooling's and ReLU's backward in one pass (reads the pooled maxima, not all of act),
      // made per example inside the conv's backward pass while it is needed.
      if (b.pool.p > 1 && !b.any_saturated && activation_ == Activation::kRelu &&
          acc.quantizer == nullptr) {
        const PooledReluGradient grad{b.pool, b.dpooled.data(), b.argmax.data(), b.pooled.data()};
        ConvBackward(b.conv, n, grad, in, params_[b.weights].value.data(),
                     params_[b.weights].grad.data(), params_[b.bias].grad.data(), din);
        b.dact_pending = n;
        dout = din;
        continue;
      }
    }
    b.dact_pending = 0;
    const int64_t in_size = b.pool.in_size(), out_size = b.pool.out_size();
    ForEachExample(n, [&](int e) {
      if constexpr (std::is_same_v<T, float>) {
        if (b.pool.p > 1 && !b.any_saturated && activation_ == Activation::kRelu) {
          MaxPoolReluBackward(b.pool, 1, b.dpooled.data() + e * out_size,
                              b.argmax.data() + e * out_size, b.pooled.data() + e * out_size,
                              b.dact.data() + e * in_size);
          return;
        }
      }
      if (b.pool.p > 1) {
        MaxPoolBackward(b.pool, 1, b.dpooled.data() + e * out_size, b.argmax.data() + e * out_size,
                        b.dact.data() + e * in_size);
      }
      if (b.any_saturated) {
        ZeroWhereSaturated(b.saturated.data() + e * in_size, b.dact.data() + e * in_size, in_size);
      }
      ActivationBackward(activation_, b.act.data() + e * in_size, b.dact.data() + e * in_size,
                         in_size);
    });
    if constexpr (std::is_same_v<T, float>) {
      ConvBackward(b.conv, n, b.dact.data(), in, params_[b.weights].value.data(),
                   params_[b.weights].grad.data(), params_[b.bias].grad.data(), din,
                   acc.quantizer != nullptr ? &acc : nullptr);
    } else {
      ConvBackward(b.conv, n, b.dact.data(), in, params_[b.weights].value.data(),
                   params_[b.weights].grad.data(), params_[b.bias].grad.data(), din);
    }
    dout = din;
  }
}

template <typename T>
const T* BasicNetwork<T>::ConvPreActivationGradient(int layer) {
  ConvBlock& b = convs_[layer];
  if constexpr (std::is_same_v<T, float>) {
    if (b.dact_pending > 0) {  // what the fused Backward made per example, for the batch
      MaxPoolReluBackward(b.pool, b.dact_pending, b.dpooled.data(), b.argmax.data(),
                          b.pooled.data(), b.dact.data());
      b.dact_pending = 0;
    }
  }
  return b.dact.data();
}

template <typename T>
void BasicNetwork<T>::QuantizeWeights(SiteQuantizer& quantizer, uint64_t key) {
  for (size_t i = 0; i < params_.size(); ++i) {
    BasicParam<T>& p = params_[i];
    // fp32 master weights: the stored value is a fresh rounding of the master copy.
    if (!p.master.empty()) p.value = p.master;
    ApplyQuantizer(quantizer, static_cast<int>(i), p.value.data(),
                   static_cast<int64_t>(p.value.size()), DeriveKey(key, i));
  }
}

template <typename T>
void BasicNetwork<T>::QuantizeGradients(SiteQuantizer& quantizer, uint64_t step_key) {
  for (size_t i = 0; i < params_.size(); ++i) {
    ApplyQuantizer(quantizer, static_cast<int>(i), params_[i].grad.data(),
                   static_cast<int64_t>(params_[i].grad.size()),
                   SiteKey(step_key, Site::kGradients, i));
  }
}

template <typename T>
void BasicNetwork<T>::QuantizeWeights(SitePrecision& precision, uint64_t key) {
  for (size_t i = 0; i < params_.size(); ++i) {
    BasicParam<T>& p = params_[i];
    if (!p.master.empty()) p.value = p.master;
    ApplyQuantizer(precision.For(Site::kWeights, static_cast<int>(i / 2)), static_cast<int>(i),
                   p.value.data(), static_cast<int64_t>(p.value.size()), DeriveKey(key, i));
  }
}

template <typename T>
std::string BasicNetwork<T>::LayerName(int layer) const {
  const int convs = static_cast<int>(convs_.size());
  if (layer < convs) return absl::StrCat("conv", layer);
  if (layer == num_layers() - 1) return "output";
  return absl::StrCat("dense", layer - convs);
}

template <typename T>
void BasicNetwork<T>::QuantizeGradients(SitePrecision& precision, uint64_t step_key,
                                        std::vector<LayerGradientStats>* stats) {
  if (stats != nullptr) stats->clear();
  std::vector<T> before;
  for (size_t i = 0; i < params_.size(); ++i) {
    std::vector<T>& g = params_[i].grad;
    const bool weights = i % 2 == 0;  // each layer: weights, then bias
    if (stats != nullptr && weights) before = g;
    ApplyQuantizer(precision.For(Site::kGradients, static_cast<int>(i / 2)), static_cast<int>(i),
                   g.data(), static_cast<int64_t>(g.size()),
                   SiteKey(step_key, Site::kGradients, i));
    if (stats != nullptr && weights) {
      LayerGradientStats s;
      s.layer = LayerName(static_cast<int>(i / 2));
      double sum = 0;
      int64_t nonzero = 0, flushed = 0;
      for (size_t e = 0; e < before.size(); ++e) {
        sum += static_cast<double>(before[e]) * static_cast<double>(before[e]);
        if (before[e] != T(0)) {
          ++nonzero;
          flushed += g[e] == T(0);
        }
      }
      s.gradient_norm = std::sqrt(sum);
      s.flushed_to_zero = nonzero > 0 ? static_cast<double>(flushed) / nonzero : 0.0;
      stats->push_back(std::move(s));
    }
  }
}

template <typename T>
void BasicNetwork<T>::KeepMasterWeights() {
  for (BasicParam<T>& p : params_) p.master = p.value;
}

template class BasicNetwork<float>;
template class BasicNetwork<double>;

}  // namespace bitsweep::trainer
