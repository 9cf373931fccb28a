#include "worker/trainer/network.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "worker/trainer/init.h"
#include "worker/trainer/ops/dense.h"
#include "worker/trainer/quant/rng.h"
#include "worker/trainer/tensor.h"

namespace bitsweep::trainer {
namespace {

// Stream-key tensor ids: conv block l is l, dense layer j (the output layer last) is 100 + j.
constexpr uint64_t kDenseTensorBase = 100;
// Init stream: DeriveKey(DeriveKey(seed, kInitTag), param index).
constexpr uint64_t kInitTag = 0x696E6974;  // "init"

Param MakeParam(int64_t size) {
  Param p;
  p.value.assign(size, 0.0f);
  p.grad.assign(size, 0.0f);
  return p;
}

}  // namespace

absl::Status CheckModelFits(const v1::ModelConfig& model, int height, int width) {
  int h = height, w = width;
  const int k = model.kernel();
  const int p = std::max(model.pool(), 1);
  for (int l = 0; l < model.conv_size(); ++l) {
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
                             int num_classes, int max_batch) {
  int64_t floats = 0;
  int c = channels, h = height, w = width;
  const int p = std::max(model.pool(), 1);
  for (int l = 0; l < model.conv_size(); ++l) {
    const ConvShape conv{c, h, w, model.conv(l), model.kernel()};
    if (conv.oh() < 1 || conv.ow() < 1) break;      // CheckModelFits reports it
    floats += 3 * conv.weight_size() + 3 * conv.f;  // value, grad, velocity
    floats += (l > 0 ? 2 : 1) * ConvColSize(conv, max_batch) + ConvTmpSize(conv, max_batch);
    floats += 2 * conv.out_size() * max_batch;
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
    in = out;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<std::unique_ptr<Network>> Network::Create(const v1::ModelConfig& model, int channels,
                                                         int height, int width, int num_classes,
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
  const int64_t bytes =
      EstimateNetworkBytes(model, channels, height, width, num_classes, max_batch);
  if (bytes > kMaxNetworkBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model and train.batch_size need ", bytes >> 20, " MiB of weights and buffers, more than ",
        "the ", kMaxNetworkBytes >> 20, " MiB a trial may use; use a smaller model or batch"));
  }
  // Worker slots train concurrently; Eigen wants its static state set up before that.
  [[maybe_unused]] static const bool eigen_ready = (Eigen::initParallel(), true);
  std::unique_ptr<Network> net(new Network());
  net->activation_ = *act;
  net->num_classes_ = num_classes;
  net->max_batch_ = max_batch;
  net->input_size_ = int64_t{channels} * height * width;
  const uint64_t init_key = DeriveKey(seed, kInitTag);
  auto add_param = [&](int64_t size, int64_t fan_in, int64_t fan_out, bool is_bias) {
    Param p = MakeParam(size);
    p.is_bias = is_bias;
    if (!is_bias) {
      InitWeights(*init, model.init_scale(), fan_in, fan_out,
                  DeriveKey(init_key, net->params_.size()), p.value.data(), size);
    }
    net->params_.push_back(std::move(p));
    return static_cast<int>(net->params_.size() - 1);
  };

  int c = channels, h = height, w = width;
  for (int l = 0; l < model.conv_size(); ++l) {
    const int k = model.kernel();
    ConvBlock b;
    b.conv = ConvShape{c, h, w, model.conv(l), k};
    b.pool = PoolShape{b.conv.f, b.conv.oh(), b.conv.ow(), model.pool()};
    b.weights = add_param(b.conv.weight_size(), b.conv.ckk(), int64_t{b.conv.f} * k * k, false);
    b.bias = add_param(b.conv.f, 0, 0, true);
    b.col.resize(ConvColSize(b.conv, max_batch));
    b.tmp.resize(ConvTmpSize(b.conv, max_batch));
    if (l > 0) b.dcol.resize(ConvColSize(b.conv, max_batch));
    b.act.resize(b.conv.out_size() * max_batch);
    b.dact.resize(b.conv.out_size() * max_batch);
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
    in = d.out;
    net->dense_.push_back(std::move(d));
  }
  return net;
}

int64_t Network::num_weights() const {
  int64_t total = 0;
  for (const Param& p : params_) total += static_cast<int64_t>(p.value.size());
  return total;
}

const float* Network::Forward(const float* x, int n, SitePrecision& precision, uint64_t step_key) {
  SiteQuantizer& qa = precision.activations;
  input_ = x;
  const float* in = x;
  for (size_t l = 0; l < convs_.size(); ++l) {
    ConvBlock& b = convs_[l];
    ConvForward(b.conv, n, in, params_[b.weights].value.data(), params_[b.bias].value.data(),
                b.col.data(), b.tmp.data(), b.act.data());
    const int64_t size = n * b.conv.out_size();
    ActivationForward(activation_, b.act.data(), size);
    qa.Apply(static_cast<int>(l), b.act.data(), size, SiteKey(step_key, Site::kActivations, l));
    if (b.pool.p > 1) {
      MaxPoolForward(b.pool, n, b.act.data(), b.pooled.data(), b.argmax.data());
      in = b.pooled.data();
    } else {
      in = b.act.data();
    }
  }
  for (size_t j = 0; j < dense_.size(); ++j) {
    DenseLayer& d = dense_[j];
    DenseForward(n, d.in, d.out, in, params_[d.weights].value.data(), params_[d.bias].value.data(),
                 d.y.data());
    const int64_t size = int64_t{n} * d.out;
    if (j + 1 < dense_.size()) ActivationForward(activation_, d.y.data(), size);
    qa.Apply(static_cast<int>(kDenseTensorBase + j), d.y.data(), size,
             SiteKey(step_key, Site::kActivations, kDenseTensorBase + j));
    in = d.y.data();
  }
  return in;
}

void Network::Backward(float* dlogits, int n, SitePrecision& precision, uint64_t step_key) {
  SiteQuantizer& qe = precision.errors;
  // dout: the gradient w.r.t. the current layer's output, quantised as it arrives.
  float* dout = dlogits;
  for (size_t jj = dense_.size(); jj-- > 0;) {
    DenseLayer& d = dense_[jj];
    const int64_t size = int64_t{n} * d.out;
    qe.Apply(static_cast<int>(kDenseTensorBase + jj), dout, size,
             SiteKey(step_key, Site::kErrors, kDenseTensorBase + jj));
    if (jj + 1 < dense_.size()) ActivationBackward(activation_, d.y.data(), dout, size);
    const float* in;
    float* din;
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
    DenseBackward(n, d.in, d.out, dout, in, params_[d.weights].value.data(),
                  params_[d.weights].grad.data(), params_[d.bias].grad.data(), din);
    dout = din;
  }
  for (size_t l = convs_.size(); l-- > 0;) {
    ConvBlock& b = convs_[l];
    qe.Apply(static_cast<int>(l), dout, n * b.out_size(), SiteKey(step_key, Site::kErrors, l));
    if (b.pool.p > 1) {
      MaxPoolBackward(b.pool, n, b.dpooled.data(), b.argmax.data(), b.dact.data());
    }
    ActivationBackward(activation_, b.act.data(), b.dact.data(), n * b.conv.out_size());
    // The first conv layer's input gradient is not needed.
    float* din = nullptr;
    if (l > 0) {
      ConvBlock& prev = convs_[l - 1];
      din = prev.pool.p > 1 ? prev.dpooled.data() : prev.dact.data();
    }
    const float* in = input_;
    if (l > 0)
      in = convs_[l - 1].pool.p > 1 ? convs_[l - 1].pooled.data() : convs_[l - 1].act.data();
    ConvBackward(b.conv, n, b.dact.data(), in, params_[b.weights].value.data(), b.col.data(),
                 b.tmp.data(), din == nullptr ? nullptr : b.dcol.data(),
                 params_[b.weights].grad.data(), params_[b.bias].grad.data(), din);
    dout = din;
  }
}

void Network::QuantizeWeights(SiteQuantizer& quantizer, uint64_t key) {
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    // fp32 master weights: the stored value is a fresh rounding of the master copy.
    if (!p.master.empty()) p.value = p.master;
    quantizer.Apply(static_cast<int>(i), p.value.data(), static_cast<int64_t>(p.value.size()),
                    DeriveKey(key, i));
  }
}

void Network::QuantizeGradients(SiteQuantizer& quantizer, uint64_t step_key) {
  for (size_t i = 0; i < params_.size(); ++i) {
    quantizer.Apply(static_cast<int>(i), params_[i].grad.data(),
                    static_cast<int64_t>(params_[i].grad.size()),
                    SiteKey(step_key, Site::kGradients, i));
  }
}

void Network::KeepMasterWeights() {
  for (Param& p : params_) p.master = p.value;
}

}  // namespace bitsweep::trainer
