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
//                (ops/accumulator_gemm.h), stream SiteKey(step_key, kAccumulator, layer).
// Every site uses the quantiser of the parameter layer it belongs to (SitePrecision::For):
// conv block l is layer l, hidden dense j is layer C + j, the output layer C + D.
//   gradients, optimizer: by the trainer (param gradients; optimiser state, optim/optimizer.h).
// All buffers are allocated once for `max_batch` examples; Forward/Backward do not allocate.
//
// The scalar type T is float (Network, the normal trainer) or double (train.compute fp64,
// seed 004's 64-bit baseline): every buffer, product, sum and activation is then a double, the
// initial weights are the float network's (the same float32 draws, widened), the input images
// are widened exactly. Quantisation sites work on float32 words (quant/), so in a double
// network a site whose format is fp32 (disabled) does nothing at all — the values stay double
// (the trainer reports such a site as 64 bits) — and any other format rounds double ->
// float32 (nearest) -> the format, back to double (ApplyQuantizer below). The accumulator site
// is float32-only.
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

// An estimate, within a few percent, of the bytes Network::Create allocates (scalar_bytes 8:
// a double network's).
int64_t EstimateNetworkBytes(const v1::ModelConfig& model, int channels, int height, int width,
                             int num_classes, int max_batch, int scalar_bytes = 4);

// One weight or bias tensor with its gradient and optimiser state.
template <typename T>
struct BasicParam {
  std::vector<T> value;
  std::vector<T> grad;
  // Optimiser state, empty until an optimiser needs it: momentum's v, adam's m, adagrad's G,
  // rmsprop's s; and adam's second moment v.
  std::vector<T> velocity;
  std::vector<T> second;

  // precision.master_weights fp32: the copy the optimiser updates (value is its quantised
  // copy; a double network's master copy is double); empty otherwise.
  std::vector<T> master;
  bool is_bias = false;  // biases are not weight-decayed
};
using Param = BasicParam<float>;

// A site's quantiser applied to a tensor: SiteQuantizer::Apply for float; for double (see the
// top of this file) nothing when the quantiser is disabled (fp32), else double -> float32
// (nearest) -> the format -> double, through a scratch buffer. Rounding twice may differ from a
// direct rounding of the double by one step of the format at rare near-ties. `saturated`, when
// not null, receives SiteQuantizer::Apply's per-element clip marks (all 0 when disabled).
// Returns whether any element was marked.
inline bool ApplyQuantizer(SiteQuantizer& q, int tensor, float* data, int64_t n, uint64_t key,
                           uint8_t* saturated = nullptr) {
  return q.Apply(tensor, data, n, key, saturated);
}
bool ApplyQuantizer(SiteQuantizer& q, int tensor, double* data, int64_t n, uint64_t key,
                    uint8_t* saturated = nullptr);

template <typename T>
class BasicNetwork {
 public:
  // Builds the network for inputs of channels × height × width and initialises its weights
  // from `seed` (model.init, model.init_scale; biases zero). Does not quantise the weights.
  // Errors: InvalidArgument naming model.conv / model.kernel / model.pool when a conv layer
  // would have an empty output, model.activation / model.init when unknown, and max_batch < 1;
  // ResourceExhausted when the network would need more than kMaxNetworkBytes.
  static absl::StatusOr<std::unique_ptr<BasicNetwork>> Create(const v1::ModelConfig& model,
                                                              int channels, int height, int width,
                                                              int num_classes, int max_batch,
                                                              uint64_t seed);

  BasicNetwork(const BasicNetwork&) = delete;
  BasicNetwork& operator=(const BasicNetwork&) = delete;

  // Logits [n, num_classes] for images x [n, C, H, W], n <= max_batch. The pointer stays valid
  // until the next Forward. `step_key` keys stochastic rounding of this pass.
  // Dynamic formats update their statistics (hence the non-const precision).
  const T* Forward(const T* x, int n, SitePrecision& precision, uint64_t step_key);

  // Back-propagates dlogits [n, num_classes] (the gradient of the loss; quantised in place at
  // the errors site) through the last Forward of the same n, overwriting every Param's grad.
  void Backward(T* dlogits, int n, SitePrecision& precision, uint64_t step_key);

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
    double gradient_norm = 0;    // L2 norm of the weight gradient (T), before rounding
    double flushed_to_zero = 0;  // fraction of its non-zero values that rounding made zero
  };
  // QuantizeGradients with each layer's own quantiser; fills *stats (one per parameter layer)
  // when not null.
  void QuantizeGradients(SitePrecision& precision, uint64_t step_key,
                         std::vector<LayerGradientStats>* stats);

  // Parameter layers: conv layers, hidden dense layers, the output layer.
  int num_layers() const { return static_cast<int>(convs_.size() + dense_.size()); }
  std::string LayerName(int layer) const;

  // precision.master_weights fp32: from now on every Param keeps a master copy (of type T)
  // (initialised from the current values), which the optimiser updates.
  void KeepMasterWeights();

  std::vector<BasicParam<T>>& params() { return params_; }
  const std::vector<BasicParam<T>>& params() const { return params_; }
  int num_classes() const { return num_classes_; }
  int max_batch() const { return max_batch_; }
  // Conv block `layer`'s gradient w.r.t. its pre-activation output, [n, F, OH, OW] of the last
  // Backward's n: the δ its weight gradient came from (seed 001 noise gains, analysis/).
  // Ask before the next Forward: the float Backward makes it per example inside the conv pass
  // when ReLU and pooling allow, and this makes the batch's from the pooling's buffers.
  const T* ConvPreActivationGradient(int layer);
  int64_t num_weights() const;

 private:
  struct ConvBlock {
    ConvShape conv;
    PoolShape pool;                  // pool.p == 1: no pooling
    int weights = 0, bias = 0;       // indices into params_
    std::vector<T> act, dact;        // [N, F, OH, OW]
    std::vector<T> pooled, dpooled;  // [N, F, OH/p, OW/p] when pooling
    std::vector<int32_t> argmax;
    // [N, F, OH, OW]: 1 where the activations site clipped the value in the last Forward
    // (clipped straight-through estimator: Backward zeroes its error); any_saturated: one was.
    std::vector<uint8_t> saturated;
    bool any_saturated = false;
    int dact_pending = 0;  // > 0: dact of that many examples not made yet (fused Backward)
    int64_t out_size() const { return pool.p > 1 ? pool.out_size() : conv.out_size(); }
  };
  struct DenseLayer {
    int in = 0, out = 0;
    int weights = 0, bias = 0;
    std::vector<T> y, dy;            // [N, out]
    std::vector<uint8_t> saturated;  // [N, out], as ConvBlock::saturated
    bool any_saturated = false;
  };

  BasicNetwork() = default;

  Activation activation_ = Activation::kRelu;
  int num_classes_ = 0;
  int max_batch_ = 0;
  int64_t input_size_ = 0;
  std::vector<ConvBlock> convs_;
  std::vector<DenseLayer> dense_;  // hidden layers then the output layer
  std::vector<BasicParam<T>> params_;
  const T* input_ = nullptr;  // of the last Forward
};

// The trainer's network (float32); BasicNetwork<double> is train.compute fp64's.
using Network = BasicNetwork<float>;
extern template class BasicNetwork<float>;
extern template class BasicNetwork<double>;

}  // namespace bitsweep::trainer
