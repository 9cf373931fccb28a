// The CNN a ModelConfig describes (DESIGN §5), with its buffers, forward and backward passes:
//
//   input [N,C,H,W]
//   -> conv block × len(model.conv): conv k×k (stride 1, valid) -> activation -> max-pool p
//   -> flatten -> hidden dense × len(model.dense): dense -> activation
//   -> output dense (num_classes units) = logits
//
// No conv and no dense layer is logistic regression (seeds/000_075f41563a3d4c76.txt).
//
// Quantisation (DESIGN §4), with the SitePrecision the trainer passes in:
//   activations: each conv block's activation output (before pooling; the pooled values are a
//                selection of already-rounded values), each hidden dense output (after its
//                activation) and the logits. The input images are not quantised.
//   errors:      the gradient of the loss w.r.t. each of those tensors as it arrives in the
//                backward pass (w.r.t. the logits, each hidden dense output, each conv block's
//                output; for relu this equals rounding the pre-activation delta).
//   weights:     by the trainer, through QuantizeWeights, at init and after every update.
//   accumulator: inside every dense and conv GEMM of the forward and backward passes
//                (ops/gemm.h AccumulatorGemm), stream SiteKey(step_key, kAccumulator, layer).
// Every site uses the quantiser of the parameter layer it belongs to (SitePrecision::For):
// conv block l is layer l, hidden dense j is layer C + j, the output layer C + D.
//   gradients, optimizer: by the trainer (param gradients; optimiser state, optim/optimizer.h).
// All buffers are allocated once for `max_batch` examples; Forward/Backward do not allocate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/pool.h"
#include "worker/trainer/quant/sites.h"

namespace bitsweep::trainer {

// Conv layer `layer`'s kernel size and pool window: model.kernels / model.pools when given,
// else model.kernel / model.pool (a pool of 0 or 1 is no pooling: 1).
int ConvKernel(const v1::ModelConfig& model, int layer);
int ConvPool(const v1::ModelConfig& model, int layer);

// Checks that every conv layer (and its pooling) of `model` keeps a spatial size >= 1 on
// height × width inputs. Errors: InvalidArgument starting with "model.conv: " and naming
// model.kernel / model.pool.
absl::Status CheckModelFits(const v1::ModelConfig& model, int height, int width);

// The memory a trial's network may take (weights, gradients, optimiser state and buffers).
inline constexpr int64_t kMaxNetworkBytes = int64_t{4} << 30;

// An estimate, within a few percent, of the bytes Network::Create allocates.
int64_t EstimateNetworkBytes(const v1::ModelConfig& model, int channels, int height, int width,
                             int num_classes, int max_batch);

// One weight or bias tensor with its gradient and optimiser state.
struct Param {
  std::vector<float> value;
  std::vector<float> grad;
  // Optimiser state, empty until an optimiser needs it: momentum's v, adam's m, adagrad's G,
  // rmsprop's s; and adam's second moment v.
  std::vector<float> velocity;
  std::vector<float> second;

  // precision.master_weights fp32: the float32 copy the optimiser updates (value is its
  // quantised copy); empty otherwise.
  std::vector<float> master;
  bool is_bias = false;  // biases are not weight-decayed
};

class Network {
 public:
  // Builds the network for inputs of channels × height × width and initialises its weights
  // from `seed` (model.init, model.init_scale; biases zero). Does not quantise the weights.
  // Errors: InvalidArgument naming model.conv / model.kernel / model.pool when a conv layer
  // would have an empty output, model.activation / model.init when unknown, and max_batch < 1;
  // ResourceExhausted when the network would need more than kMaxNetworkBytes.
  static absl::StatusOr<std::unique_ptr<Network>> Create(const v1::ModelConfig& model, int channels,
                                                         int height, int width, int num_classes,
                                                         int max_batch, uint64_t seed);

  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Logits [n, num_classes] for images x [n, C, H, W], n <= max_batch. The pointer stays valid
  // until the next Forward. `step_key` keys stochastic rounding of this pass.
  // Dynamic formats update their statistics (hence the non-const precision).
  const float* Forward(const float* x, int n, SitePrecision& precision, uint64_t step_key);

  // Back-propagates dlogits [n, num_classes] (the gradient of the loss; quantised in place at
  // the errors site) through the last Forward of the same n, overwriting every Param's grad.
  void Backward(float* dlogits, int n, SitePrecision& precision, uint64_t step_key);

  // Rounds every weight and bias with `quantizer` (param i is its tensor i and uses stream
  // DeriveKey(key, i)); with master weights, value = round(master).
  void QuantizeWeights(SiteQuantizer& quantizer, uint64_t key);
  // The same with each parameter layer's own weights quantiser (precision.layers).
  void QuantizeWeights(SitePrecision& precision, uint64_t key);

  // Rounds every param's gradient (param i is its tensor i, stream SiteKey(step_key,
  // kGradients, i)): the gradients site, between Backward and the optimiser step.
  void QuantizeGradients(SiteQuantizer& quantizer, uint64_t step_key);

  // What the gradients site did to one parameter layer's weight gradient (CurvePoint.layers).
  struct LayerGradientStats {
    std::string layer;           // conv0.., dense0.., output
    double gradient_norm = 0;    // L2 norm of the float32 weight gradient, before rounding
    double flushed_to_zero = 0;  // fraction of its non-zero values that rounding made zero
  };
  // QuantizeGradients with each layer's own quantiser; fills *stats (one per parameter layer)
  // when not null.
  void QuantizeGradients(SitePrecision& precision, uint64_t step_key,
                         std::vector<LayerGradientStats>* stats);

  // Parameter layers: conv layers, hidden dense layers, the output layer.
  int num_layers() const { return static_cast<int>(convs_.size() + dense_.size()); }
  std::string LayerName(int layer) const;

  // precision.master_weights fp32: from now on every Param keeps a float32 master copy
  // (initialised from the current values), which the optimiser updates.
  void KeepMasterWeights();

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  int num_classes() const { return num_classes_; }
  int max_batch() const { return max_batch_; }
  int64_t num_weights() const;

 private:
  struct ConvBlock {
    ConvShape conv;
    PoolShape pool;                      // pool.p == 1: no pooling
    int weights = 0, bias = 0;           // indices into params_
    std::vector<float> act, dact;        // [N, F, OH, OW]
    std::vector<float> pooled, dpooled;  // [N, F, OH/p, OW/p] when pooling
    std::vector<int32_t> argmax;
    int64_t out_size() const { return pool.p > 1 ? pool.out_size() : conv.out_size(); }
  };
  struct DenseLayer {
    int in = 0, out = 0;
    int weights = 0, bias = 0;
    std::vector<float> y, dy;  // [N, out]
  };

  Network() = default;

  Activation activation_ = Activation::kRelu;
  int num_classes_ = 0;
  int max_batch_ = 0;
  int64_t input_size_ = 0;
  std::vector<ConvBlock> convs_;
  std::vector<DenseLayer> dense_;  // hidden layers then the output layer
  std::vector<Param> params_;
  const float* input_ = nullptr;  // of the last Forward
};

}  // namespace bitsweep::trainer
