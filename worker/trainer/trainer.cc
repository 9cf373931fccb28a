// The training loop, top to bottom: build the network, then per iteration gather a shuffled
// mini-batch, forward, loss, backward, optimiser step, weight rounding; evaluate every
// eval_every iterations and at the end; finally the result and its metrics.
#include "worker/trainer/trainer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "oneapi/tbb/task_arena.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/optim/optimizer.h"
#include "worker/trainer/optim/schedule.h"
#include "worker/trainer/quant/rng.h"
#include "worker/trainer/quant/sites.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

// Stream tags under the trial seed: every random decision has its own independent stream.
constexpr uint64_t kShuffleTag = 1;
constexpr uint64_t kTrainTag = 2;   // forward/backward rounding, per iteration
constexpr uint64_t kEvalTag = 3;    // evaluation rounding, per evaluation and chunk
constexpr uint64_t kWeightTag = 4;  // weight rounding, per update (0 = at init)

// A loss above this (or non-finite) ends the trial as diverged.
constexpr double kDivergenceLoss = 1e6;
// Evaluation runs in chunks of at least this many examples (at most batch_size otherwise).
constexpr int kMinEvalBatch = 128;

using Clock = std::chrono::steady_clock;

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
  std::vector<int64_t> confusion;  // [true, predicted]
};

// Evaluates the first `count` test examples in chunks of `chunk`.
template <typename T>
Evaluation Evaluate(BasicNetwork<T>& net, const Dataset& data, int64_t count, int chunk, Loss loss,
                    const SitePrecision& training_precision, uint64_t eval_key) {
  // A copy: evaluation uses the dynamic formats' current state without changing it.
  SitePrecision precision = training_precision;
  precision.set_measure(false);
  const int k = net.num_classes();
  Evaluation ev;
  ev.confusion.assign(int64_t{k} * k, 0);
  std::vector<int> predictions(chunk);
  std::vector<T> widened;  // a double network's input: the images converted (exactly)
  if constexpr (!std::is_same_v<T, float>) widened.resize(int64_t{chunk} * data.image_size());
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0, c = 0; start < count; start += chunk, ++c) {
    const int n = static_cast<int>(std::min<int64_t>(chunk, count - start));
    const float* images = data.test_images.data() + start * data.image_size();
    const T* input;
    if constexpr (std::is_same_v<T, float>) {
      input = images;
    } else {
      std::copy(images, images + int64_t{n} * data.image_size(), widened.begin());
      input = widened.data();
    }
    const T* logits = net.Forward(input, n, precision, DeriveKey(eval_key, c));
    const uint8_t* labels = data.test_labels.data() + start;
    const LossStats s =
        LossForwardBackward(loss, n, k, logits, labels, T(0), nullptr, predictions.data());
    loss_sum += s.loss_sum;
    correct += s.correct;
    for (int e = 0; e < n; ++e) ++ev.confusion[int64_t{labels[e]} * k + predictions[e]];
  }
  ev.loss = loss_sum / static_cast<double>(count);
  ev.accuracy = static_cast<double>(correct) / static_cast<double>(count);
  return ev;
}

// Per-class recall and Cohen's kappa, κ = (p_o - p_e) / (1 - p_e) with p_e = Σ_k r_k c_k / N²
// (Cohen 1960; seeds/004_9626593eaf7665a5.txt lists kappa among the metrics).
void FillClassMetrics(const std::vector<int64_t>& confusion, int k, v1::TrialResult* result) {
  std::vector<double> rows(k, 0), cols(k, 0);
  double total = 0, diagonal = 0;
  for (int t = 0; t < k; ++t) {
    for (int p = 0; p < k; ++p) {
      const double v = static_cast<double>(confusion[int64_t{t} * k + p]);
      rows[t] += v;
      cols[p] += v;
      total += v;
      if (t == p) diagonal += v;
    }
  }
  double expected = 0;
  for (int c = 0; c < k; ++c) {
    result->add_per_class_recall(rows[c] > 0 ? confusion[int64_t{c} * k + c] / rows[c] : 0.0);
    expected += rows[c] * cols[c];
  }
  for (int64_t v : confusion) result->add_confusion(v);
  if (total == 0) return;
  const double po = diagonal / total;
  const double pe = expected / (total * total);
  result->set_kappa(pe < 1 ? (po - pe) / (1 - pe) : (po == 1 ? 1.0 : 0.0));
}

// ---- Checkpoints -------------------------------------------------------------------------
// Layout (little-endian): magic "BSWCKPT\0" | u32 version | u64 payload length | payload |
// u64 hash of everything before it. Version 2 added the parameters' scalar width after the
// config hash (4: float32, 8: train.compute fp64's doubles); version 1 (always float32) is
// still read. The payload is a flat sequence of fixed-width fields and
// count-prefixed arrays (CheckpointState below, in declaration order); every count is checked
// against what is left and against the network the config builds before anything is used.
static_assert(std::endian::native == std::endian::little, "checkpoints are little-endian");
constexpr char kCheckpointMagic[8] = {'B', 'S', 'W', 'C', 'K', 'P', 'T', '\0'};
constexpr uint32_t kCheckpointVersion = 2;
constexpr size_t kHeaderBytes = 8 + 4 + 8;
constexpr size_t kTrailerBytes = 8;

// A word-wise hash (splitmix64's mixer over 8-byte words; the tail zero-padded with its
// length): checks integrity, not authenticity.
uint64_t HashBytes(std::string_view bytes) {
  uint64_t h = Mix64(bytes.size() ^ 0x6A09E667F3BCC909ULL);
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = Mix64(h ^ w) + 0x9E3779B97F4A7C15ULL;
  }
  uint64_t tail = 0;
  if (i < bytes.size()) std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  return Mix64(h ^ tail ^ (uint64_t{bytes.size() - i} << 56));
}

class ByteWriter {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void PutArray(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  // An array of `width`-byte elements held as raw bytes.
  void PutRaw(const std::string& bytes, uint32_t width) {
    Put<uint64_t>(bytes.size() / width);
    out_ += bytes;
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <typename T>
  bool GetArray(std::vector<T>* v, uint64_t max_count) {
    uint64_t n;
    if (!Get(&n) || n > max_count || n > (in_.size() - pos_) / sizeof(T)) return false;
    v->resize(n);
    // memcpy from or to an empty vector's null data() is undefined even for 0 bytes.
    if (n > 0) std::memcpy(v->data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }
  bool GetRaw(std::string* bytes, uint32_t width, uint64_t max_count) {
    uint64_t n;
    if (!Get(&n) || n > max_count || n > (in_.size() - pos_) / width) return false;
    bytes->assign(in_.data() + pos_, n * width);
    pos_ += n * width;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

struct CheckpointState {
  uint64_t config_hash = 0;
  uint32_t scalar_bytes = 4;  // of the parameter arrays: sizeof(float) or sizeof(double)
  int64_t iteration = 0;
  int64_t epoch = 0, index = 0;  // data order position: epoch and batch within it
  int64_t evaluations = 0;
  int64_t images_trained = 0;
  double train_seconds = 0;
  double best_accuracy = 0;
  int64_t iterations_to_target = -1;
  double running_loss = 0, running_accuracy = 0;
  int64_t running_batches = 0;
  uint32_t evaluated = 0;
  double last_loss = 0, last_accuracy = 0;
  std::vector<int64_t> last_confusion;
  int64_t optimizer_steps = 0;
  struct ParamState {  // raw arrays of scalar_bytes-wide values
    std::string value, master, velocity, second;
  };
  std::vector<ParamState> params;
  int64_t schedule_index = 0;               // the precision.schedule entry in force
  std::vector<SiteQuantizer::State> sites;  // SitePrecision::all(), in order
};

constexpr Site kCheckpointSites[kNumSites] = {Site::kWeights, Site::kActivations, Site::kErrors,
                                              Site::kGradients, Site::kOptimizer};

void PutStats(ByteWriter& w, const QuantStats& q) {
  w.Put(q.values);
  w.Put(q.overflows);
  w.Put(q.overflows_one_less);
  w.Put(q.nonzero);
  w.Put(q.error_percent_sum);
  w.Put(q.bits_sum);
}

bool GetStats(ByteReader& r, QuantStats* q) {
  return r.Get(&q->values) && r.Get(&q->overflows) && r.Get(&q->overflows_one_less) &&
         r.Get(&q->nonzero) && r.Get(&q->error_percent_sum) && r.Get(&q->bits_sum);
}

std::string SerializeCheckpoint(const CheckpointState& c) {
  ByteWriter w;
  w.Put(c.config_hash);
  w.Put(c.scalar_bytes);
  w.Put(c.iteration);
  w.Put(c.epoch);
  w.Put(c.index);
  w.Put(c.evaluations);
  w.Put(c.images_trained);
  w.Put(c.train_seconds);
  w.Put(c.best_accuracy);
  w.Put(c.iterations_to_target);
  w.Put(c.running_loss);
  w.Put(c.running_accuracy);
  w.Put(c.running_batches);
  w.Put(c.evaluated);
  w.Put(c.last_loss);
  w.Put(c.last_accuracy);
  w.PutArray(c.last_confusion);
  w.Put(c.optimizer_steps);
  w.Put<uint64_t>(c.params.size());
  for (const CheckpointState::ParamState& p : c.params) {
    w.PutRaw(p.value, c.scalar_bytes);
    w.PutRaw(p.master, c.scalar_bytes);
    w.PutRaw(p.velocity, c.scalar_bytes);
    w.PutRaw(p.second, c.scalar_bytes);
  }
  w.Put(c.schedule_index);
  w.Put<uint64_t>(c.sites.size());
  for (const SiteQuantizer::State& s : c.sites) {
    w.Put<int32_t>(s.dps_integer_bits);
    w.Put<int32_t>(s.dps_frac_bits);
    w.Put<uint64_t>(s.dynfixed_frac_bits.size());
    for (const auto& [tensor, fl] : s.dynfixed_frac_bits) {
      w.Put<int32_t>(tensor);
      w.Put<int32_t>(fl);
    }
    PutStats(w, s.last);
  }
  std::string out(kCheckpointMagic, sizeof(kCheckpointMagic));
  const uint32_t version = kCheckpointVersion;
  const uint64_t length = w.bytes().size();
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&length), 8);
  out += w.bytes();
  const uint64_t hash = HashBytes(out);
  out.append(reinterpret_cast<const char*>(&hash), 8);
  return out;
}

absl::Status CorruptCheckpoint(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("checkpoint: ", what));
}

// Checks the envelope (magic, version, length, hash) and returns the payload and its version.
absl::StatusOr<std::string_view> CheckpointPayload(std::string_view state, uint32_t* version_out) {
  if (state.size() < kHeaderBytes + kTrailerBytes ||
      std::memcmp(state.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) != 0) {
    return CorruptCheckpoint("not a bitsweep trainer checkpoint (bad magic or too short)");
  }
  uint32_t version;
  uint64_t length;
  std::memcpy(&version, state.data() + 8, 4);
  std::memcpy(&length, state.data() + 12, 8);
  if (version != 1 && version != kCheckpointVersion) {
    return CorruptCheckpoint(absl::StrCat(
        "version ", version, " is not supported (this build: ", kCheckpointVersion, ")"));
  }
  if (length != state.size() - kHeaderBytes - kTrailerBytes) {
    return CorruptCheckpoint(absl::StrCat("truncated or padded: header says ", length,
                                          " payload bytes, there are ",
                                          state.size() - kHeaderBytes - kTrailerBytes));
  }
  uint64_t hash;
  std::memcpy(&hash, state.data() + state.size() - kTrailerBytes, 8);
  if (hash != HashBytes(state.substr(0, state.size() - kTrailerBytes))) {
    return CorruptCheckpoint("corrupt (hash mismatch)");
  }
  *version_out = version;
  return state.substr(kHeaderBytes, length);
}

absl::StatusOr<CheckpointState> ParseCheckpoint(std::string_view state) {
  uint32_t version = 0;
  ASSIGN_OR_RETURN(const std::string_view payload, CheckpointPayload(state, &version));
  ByteReader r(payload);
  CheckpointState c;
  constexpr uint64_t kMaxCount = uint64_t{1} << 40;
  uint64_t num_params = 0;
  bool ok = r.Get(&c.config_hash) && (version == 1 || r.Get(&c.scalar_bytes)) &&
            (c.scalar_bytes == 4 || c.scalar_bytes == 8) && r.Get(&c.iteration) &&
            r.Get(&c.epoch) && r.Get(&c.index) && r.Get(&c.evaluations) &&
            r.Get(&c.images_trained) && r.Get(&c.train_seconds) && r.Get(&c.best_accuracy) &&
            r.Get(&c.iterations_to_target) && r.Get(&c.running_loss) &&
            r.Get(&c.running_accuracy) && r.Get(&c.running_batches) && r.Get(&c.evaluated) &&
            r.Get(&c.last_loss) && r.Get(&c.last_accuracy) &&
            r.GetArray(&c.last_confusion, 256 * 256) && r.Get(&c.optimizer_steps) &&
            r.Get(&num_params) && num_params <= 1024;
  if (ok) c.params.resize(num_params);
  for (uint64_t i = 0; ok && i < num_params; ++i) {
    CheckpointState::ParamState& p = c.params[i];
    const uint32_t width = c.scalar_bytes;
    ok = r.GetRaw(&p.value, width, kMaxCount) && r.GetRaw(&p.master, width, kMaxCount) &&
         r.GetRaw(&p.velocity, width, kMaxCount) && r.GetRaw(&p.second, width, kMaxCount);
  }
  uint64_t num_sites = 0;
  ok = ok && r.Get(&c.schedule_index) && r.Get(&num_sites) && num_sites <= 4096;
  if (ok) c.sites.resize(num_sites);
  for (uint64_t s = 0; ok && s < num_sites; ++s) {
    SiteQuantizer::State& site = c.sites[s];
    int32_t il = 0, fl = 0;
    uint64_t n = 0;
    ok = r.Get(&il) && r.Get(&fl) && r.Get(&n) && n <= 4096;
    site.dps_integer_bits = il;
    site.dps_frac_bits = fl;
    for (uint64_t i = 0; ok && i < n; ++i) {
      int32_t tensor = 0, bits = 0;
      ok = r.Get(&tensor) && r.Get(&bits);
      site.dynfixed_frac_bits.emplace_back(tensor, bits);
    }
    ok = ok && GetStats(r, &site.last);
  }
  if (!ok || !r.done()) return CorruptCheckpoint("malformed payload");
  if (c.iteration < 0 || c.epoch < 0 || c.index < 0 || c.evaluations < 0 || c.running_batches < 0) {
    return CorruptCheckpoint("negative counters");
  }
  return c;
}

// The hash a checkpoint carries: the config (deterministic protobuf serialisation) and what
// of the dataset the run depends on.
uint64_t ConfigHash(const v1::TrialConfig& config, const Dataset& data, int64_t train_n,
                    int64_t test_n) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  ByteWriter w;
  w.Put<int64_t>(train_n);
  w.Put<int64_t>(test_n);
  w.Put<int32_t>(data.channels);
  w.Put<int32_t>(data.height);
  w.Put<int32_t>(data.width);
  w.Put<int32_t>(data.num_classes);
  bytes += w.bytes();
  return HashBytes(bytes);
}

template <typename T>
std::string ToBytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> FromBytes(const std::string& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

// Fills `net`, `optimizer` and `precision` from a checkpoint (of the net's scalar width),
// after checking it fits them.
template <typename T>
absl::Status RestoreCheckpoint(const CheckpointState& c, BasicNetwork<T>& net, Optimizer& optimizer,
                               SitePrecision& precision) {
  std::vector<BasicParam<T>>& params = net.params();
  if (c.params.size() != params.size()) {
    return CorruptCheckpoint(absl::StrCat("has ", c.params.size(), " parameter tensors, the ",
                                          "network has ", params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const CheckpointState::ParamState& s = c.params[i];
    const size_t n = params[i].value.size() * sizeof(T);  // bytes
    auto fits = [n](const std::string& v) { return v.empty() || v.size() == n; };
    if (s.value.size() != n || !fits(s.master) || !fits(s.velocity) || !fits(s.second) ||
        s.master.empty() != params[i].master.empty()) {
      return CorruptCheckpoint(absl::StrCat("parameter tensor ", i, " does not fit the network"));
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].value = FromBytes<T>(c.params[i].value);
    params[i].master = FromBytes<T>(c.params[i].master);
    params[i].velocity = FromBytes<T>(c.params[i].velocity);
    params[i].second = FromBytes<T>(c.params[i].second);
  }
  optimizer.set_steps(c.optimizer_steps);
  std::vector<SiteQuantizer*> quantizers = precision.all();
  if (quantizers.size() != c.sites.size()) {
    return CorruptCheckpoint(absl::StrCat("has ", c.sites.size(), " quantiser states, the ",
                                          "precision has ", quantizers.size()));
  }
  for (size_t s = 0; s < quantizers.size(); ++s) quantizers[s]->set_state(c.sites[s]);
  return absl::OkStatus();
}

// The loop with every tensor of scalar type T: float, or double for train.compute fp64.
template <typename T>
absl::StatusOr<v1::TrialResult> TrainImpl(const v1::TrialConfig& config, const Dataset& data,
                                          const ProgressCallback& on_progress,
                                          const TrainOptions& options);

}  // namespace

absl::StatusOr<int64_t> CheckpointIteration(std::string_view state) {
  ASSIGN_OR_RETURN(const CheckpointState c, ParseCheckpoint(state));
  return c.iteration;
}

absl::StatusOr<std::vector<std::vector<float>>> CheckpointWeights(std::string_view state) {
  ASSIGN_OR_RETURN(const CheckpointState c, ParseCheckpoint(state));
  std::vector<std::vector<float>> weights;
  for (const CheckpointState::ParamState& p : c.params) {
    const std::string& raw = p.master.empty() ? p.value : p.master;
    std::vector<float>& w = weights.emplace_back(raw.size() / c.scalar_bytes);
    for (size_t i = 0; i < w.size(); ++i) {
      if (c.scalar_bytes == sizeof(double)) {
        double d;
        std::memcpy(&d, raw.data() + i * sizeof(double), sizeof(double));
        w[i] = static_cast<float>(d);
      } else {
        std::memcpy(&w[i], raw.data() + i * sizeof(float), sizeof(float));
      }
    }
  }
  return weights;
}

absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress) {
  return Train(config, data, on_progress, TrainOptions());
}

absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress,
                                      const TrainOptions& options) {
  if (options.threads < 1 || options.threads > 1024) {
    return absl::InvalidArgumentError("threads: must be between 1 and 1024");
  }
  if (options.checkpoint_every < 0) {
    return absl::InvalidArgumentError("checkpoint_every: must not be negative");
  }
  // Every parallel loop inside runs in this arena: at most `threads` threads for this trial.
  oneapi::tbb::task_arena arena(options.threads);
  absl::StatusOr<v1::TrialResult> result;
  arena.execute([&] {
    result = config.train().compute() == "fp64"
                 ? TrainImpl<double>(config, data, on_progress, options)
                 : TrainImpl<float>(config, data, on_progress, options);
  });
  return result;
}

namespace {

template <typename T>
absl::StatusOr<v1::TrialResult> TrainImpl(const v1::TrialConfig& config, const Dataset& data,
                                          const ProgressCallback& on_progress,
                                          const TrainOptions& options) {
  if (config.kind() == "simulated") {
    return absl::InvalidArgumentError(
        "kind: 'simulated' trials are run by the worker, not the trainer");
  }
  RETURN_IF_ERROR(ValidateTrialConfig(config));
  const v1::TrainConfig& tc = config.train();
  const int64_t train_n = config.dataset().train_limit() > 0
                              ? std::min(config.dataset().train_limit(), data.train_size())
                              : data.train_size();
  const int64_t test_n = config.dataset().test_limit() > 0
                             ? std::min(config.dataset().test_limit(), data.test_size())
                             : data.test_size();
  if (train_n < 1) return absl::InvalidArgumentError("dataset: no training examples");
  if (test_n < 1) return absl::InvalidArgumentError("dataset: no test examples");
  if (data.num_classes < 2 || data.num_classes > 256) {
    return absl::InvalidArgumentError("dataset: num_classes must be between 2 and 256");
  }
  if (data.channels < 1 || data.height < 1 || data.width < 1 ||
      static_cast<int64_t>(data.train_images.size()) != data.train_size() * data.image_size() ||
      static_cast<int64_t>(data.test_images.size()) != data.test_size() * data.image_size()) {
    return absl::InvalidArgumentError("dataset: image buffers do not match the shape and labels");
  }
  for (const std::vector<uint8_t>* labels : {&data.train_labels, &data.test_labels}) {
    for (uint8_t label : *labels) {
      if (label >= data.num_classes) {
        return absl::InvalidArgumentError("dataset: a label is not below num_classes");
      }
    }
  }
  const int num_layers = config.model().conv_size() + config.model().dense_size() + 1;
  ASSIGN_OR_RETURN(const std::vector<ScheduledPrecision> precision_schedule,
                   PrecisionSchedule(config.precision(), num_layers));
  // The schedule entry in force for the (0-based) update `iteration`.
  auto schedule_index_at = [&](int64_t iteration) {
    int64_t index = 0;
    while (index + 1 < static_cast<int64_t>(precision_schedule.size()) &&
           precision_schedule[index + 1].from_iteration <= iteration) {
      ++index;
    }
    return index;
  };
  int64_t schedule_index = 0;
  ASSIGN_OR_RETURN(SitePrecision precision,
                   MakeSitePrecision(precision_schedule[0].config, num_layers));
  ASSIGN_OR_RETURN(const Loss loss, ParseLoss(tc.loss()));
  OptimizerOptions optimizer_options;
  ASSIGN_OR_RETURN(optimizer_options.kind, ParseOptimizer(tc.optimizer()));
  optimizer_options.momentum = tc.momentum();
  optimizer_options.beta1 = tc.beta1();
  optimizer_options.beta2 = tc.beta2();
  optimizer_options.eps = tc.eps();
  optimizer_options.rho = tc.rho();
  optimizer_options.weight_decay = tc.weight_decay();
  LrSchedule schedule;
  ASSIGN_OR_RETURN(schedule.kind, ParseLrSchedule(tc.lr_schedule()));
  schedule.lr = tc.lr();
  schedule.gamma = tc.lr_gamma();
  schedule.power = tc.lr_power();
  schedule.step_size = std::max<int64_t>(tc.lr_step_size(), 1);

  const int batch = static_cast<int>(std::min<int64_t>(tc.batch_size(), train_n));
  const int eval_chunk =
      static_cast<int>(std::min<int64_t>(std::max(batch, kMinEvalBatch), test_n));
  const uint64_t seed = config.seed();
  ASSIGN_OR_RETURN(std::unique_ptr<BasicNetwork<T>> net,
                   BasicNetwork<T>::Create(config.model(), data.channels, data.height, data.width,
                                           data.num_classes, std::max(batch, eval_chunk), seed));
  Optimizer optimizer(optimizer_options);
  const uint64_t weight_key = DeriveKey(seed, kWeightTag);
  // master_weights none: the stored weights are the quantised ones from the start; fp32: the
  // optimiser updates a float32 copy and the forward pass sees its rounding.
  if (config.precision().master_weights() == "fp32") net->KeepMasterWeights();
  net->QuantizeWeights(precision, DeriveKey(weight_key, 0));

  // The last partial batch of an epoch is kept: every example is seen once per epoch.
  const int64_t iters_per_epoch = (train_n + batch - 1) / batch;
  const int64_t total_iters =
      tc.iterations() > 0 ? tc.iterations() : int64_t{tc.epochs()} * iters_per_epoch;
  schedule.total_iterations = total_iters;
  const int k = data.num_classes;
  const int64_t image_size = data.image_size();

  const uint64_t config_hash = ConfigHash(config, data, train_n, test_n);
  std::vector<int64_t> order(train_n);
  std::vector<T> images(int64_t{batch} * image_size);
  std::vector<uint8_t> labels(batch);
  std::vector<T> dlogits(int64_t{batch} * k);

  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_num_classes(k);
  result.set_iterations_to_target(-1);
  Evaluation last;
  bool evaluated = false;
  double best_accuracy = 0;
  double running_loss = 0, running_accuracy = 0;
  int64_t running_batches = 0;
  int64_t images_trained = 0;
  Clock::duration train_time{};
  int64_t it = 0;
  int64_t evaluations = 0;
  double previous_seconds = 0;  // train_seconds before the checkpoint resumed from

  if (!options.resume_from.empty()) {
    ASSIGN_OR_RETURN(const CheckpointState c, ParseCheckpoint(options.resume_from));
    if (c.scalar_bytes != sizeof(T)) {
      auto compute = [](size_t bytes) { return bytes == 8 ? "fp64" : "fp32"; };
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint: taken by a train.compute ", compute(c.scalar_bytes), " trial (",
                       c.scalar_bytes * 8, "-bit parameters); this trial computes in ",
                       compute(sizeof(T)), " and cannot resume from it"));
    }
    if (c.config_hash != config_hash) {
      return absl::InvalidArgumentError(
          "checkpoint: taken with another trial config or dataset; resume with the same ones");
    }
    if (c.iteration > total_iters || c.epoch != c.iteration / iters_per_epoch ||
        c.index != c.iteration % iters_per_epoch || c.last_confusion.size() != size_t(k) * k) {
      return CorruptCheckpoint("its position does not fit the config");
    }
    if (c.schedule_index < 0 ||
        c.schedule_index >= static_cast<int64_t>(precision_schedule.size())) {
      return CorruptCheckpoint("its precision schedule position does not fit the config");
    }
    schedule_index = c.schedule_index;
    ASSIGN_OR_RETURN(precision,
                     MakeSitePrecision(precision_schedule[schedule_index].config, num_layers));
    RETURN_IF_ERROR(RestoreCheckpoint(c, *net, optimizer, precision));
    it = c.iteration;
    evaluations = c.evaluations;
    images_trained = c.images_trained;
    previous_seconds = c.train_seconds;
    best_accuracy = c.best_accuracy;
    result.set_iterations_to_target(c.iterations_to_target);
    running_loss = c.running_loss;
    running_accuracy = c.running_accuracy;
    running_batches = c.running_batches;
    evaluated = c.evaluated != 0;
    last.loss = c.last_loss;
    last.accuracy = c.last_accuracy;
    last.confusion = c.last_confusion;
  }
  auto checkpoint = [&] {
    CheckpointState c;
    c.config_hash = config_hash;
    c.scalar_bytes = sizeof(T);
    c.iteration = it;
    c.epoch = it / iters_per_epoch;
    c.index = it % iters_per_epoch;
    c.evaluations = evaluations;
    c.images_trained = images_trained;
    c.train_seconds = previous_seconds + std::chrono::duration<double>(train_time).count();
    c.best_accuracy = best_accuracy;
    c.iterations_to_target = result.iterations_to_target();
    c.running_loss = running_loss;
    c.running_accuracy = running_accuracy;
    c.running_batches = running_batches;
    c.evaluated = evaluated ? 1 : 0;
    c.last_loss = last.loss;
    c.last_accuracy = last.accuracy;
    c.last_confusion = last.confusion;
    c.optimizer_steps = optimizer.steps();
    for (const BasicParam<T>& p : net->params()) {
      c.params.push_back(
          {ToBytes(p.value), ToBytes(p.master), ToBytes(p.velocity), ToBytes(p.second)});
    }
    c.schedule_index = schedule_index;
    for (SiteQuantizer* q : precision.all()) c.sites.push_back(q->state());
    return SerializeCheckpoint(c);
  };

  int64_t shuffled_epoch = -1;
  int64_t last_checkpoint_iteration = -1;
  std::vector<typename BasicNetwork<T>::LayerGradientStats> layer_stats;
  while (it < total_iters) {
    if (options.should_stop && options.should_stop()) {
      return absl::CancelledError(absl::StrCat("training stopped at iteration ", it));
    }
    const Clock::time_point step_start = Clock::now();
    const int64_t epoch = it / iters_per_epoch;
    const int64_t pos = it % iters_per_epoch;
    if (epoch != shuffled_epoch) {
      shuffled_epoch = epoch;
      // Fisher-Yates from the epoch's own stream: the order depends only on (seed, epoch).
      std::iota(order.begin(), order.end(), int64_t{0});
      CounterRng rng(DeriveKey(DeriveKey(seed, kShuffleTag), epoch));
      for (int64_t i = train_n - 1; i > 0; --i) {
        std::swap(order[i], order[rng.Below(i + 1)]);
      }
    }
    const double lr = schedule.At(it);  // 0-based iteration of this update
    if (const int64_t index = schedule_index_at(it); index != schedule_index) {
      // precision.schedule: the new precision starts with fresh dynamic state.
      schedule_index = index;
      ASSIGN_OR_RETURN(precision, MakeSitePrecision(precision_schedule[index].config, num_layers));
    }
    ++it;
    // Only the iteration before an evaluation is measured (CurvePoint.sites).
    const bool report = it % tc.eval_every() == 0 || it == total_iters;
    precision.set_measure(report);
    const int64_t start = pos * batch;
    const int n = static_cast<int>(std::min<int64_t>(batch, train_n - start));
    for (int e = 0; e < n; ++e) {
      const int64_t src = order[start + e];
      // float -> T: a copy for float, an exact widening for double.
      const float* image = data.train_images.data() + src * image_size;
      std::copy(image, image + image_size, images.begin() + e * image_size);
      labels[e] = data.train_labels[src];
    }
    const uint64_t step_key = DeriveKey(DeriveKey(seed, kTrainTag), it);
    const T* logits = net->Forward(images.data(), n, precision, step_key);
    const LossStats s = LossForwardBackward(loss, n, k, logits, labels.data(),
                                            T(1) / static_cast<T>(n), dlogits.data(), nullptr);
    const double batch_loss = s.loss_sum / n;
    if (!std::isfinite(batch_loss) || batch_loss > kDivergenceLoss) {
      result.set_outcome(v1::TRIAL_OUTCOME_DIVERGED);
      result.set_detail(
          absl::StrCat("training loss ", batch_loss, " at iteration ", it,
                       std::isfinite(batch_loss) ? " exceeds 1e6" : " is not finite"));
      train_time += Clock::now() - step_start;
      break;
    }
    net->Backward(dlogits.data(), n, precision, step_key);
    net->QuantizeGradients(precision, step_key, report ? &layer_stats : nullptr);
    const BasicStateRounder<T> round_state = [&](int tensor, T* state, int64_t size) {
      ApplyQuantizer(precision.For(Site::kOptimizer, tensor / 4), tensor, state, size,
                     SiteKey(step_key, Site::kOptimizer, static_cast<uint64_t>(tensor)));
    };
    optimizer.Step(net->params(), lr, round_state);
    net->QuantizeWeights(precision, DeriveKey(weight_key, it));
    precision.EndIteration();
    train_time += Clock::now() - step_start;
    images_trained += n;
    running_loss += batch_loss;
    running_accuracy += static_cast<double>(s.correct) / n;
    ++running_batches;

    if (report) {
      last = Evaluate(*net, data, test_n, eval_chunk, loss, precision,
                      DeriveKey(DeriveKey(seed, kEvalTag), it));
      evaluated = true;
      best_accuracy = std::max(best_accuracy, last.accuracy);
      if (result.iterations_to_target() < 0 && last.accuracy >= tc.target_accuracy()) {
        result.set_iterations_to_target(it);
      }
      v1::CurvePoint point;
      point.set_iteration(it);
      point.set_epoch(static_cast<double>(it) / static_cast<double>(iters_per_epoch));
      point.set_train_loss(running_loss / running_batches);
      point.set_train_accuracy(running_accuracy / running_batches);
      point.set_test_loss(last.loss);
      point.set_test_accuracy(last.accuracy);
      point.set_learning_rate(lr);
      for (const auto& ls : layer_stats) {
        v1::LayerStats* stats = point.add_layers();
        stats->set_layer(ls.layer);
        stats->set_gradient_norm(ls.gradient_norm);
        stats->set_flushed_to_zero(ls.flushed_to_zero);
      }
      for (Site site : precision.listed) {
        if (site == Site::kAccumulator) continue;  // not measured (inside the GEMMs)
        const QuantStats& q = precision.at(site).last_iteration();
        v1::SiteStats* stats = point.add_sites();
        stats->set_site(SiteName(site));
        stats->set_effective_bits(q.effective_bits());
        stats->set_quantization_error_percent(q.error_percent());
        stats->set_overflow_percent(100.0 * q.overflow_rate());
        if (!std::is_same_v<T, float> && !precision.at(site).enabled()) {
          // fp32 in a double network: not rounded at all (network.h), the values are doubles.
          stats->set_effective_bits(64);
        }
      }
      running_loss = running_accuracy = 0;
      running_batches = 0;
      if (on_progress && !on_progress(point)) {
        return absl::CancelledError(
            absl::StrCat("training cancelled by the progress callback at iteration ", it));
      }
      ++evaluations;
      if (options.checkpoint_every > 0 && options.on_checkpoint &&
          evaluations % options.checkpoint_every == 0) {
        options.on_checkpoint(it, checkpoint());
        last_checkpoint_iteration = it;
      }
    }
  }

  if (options.final_checkpoint && options.on_checkpoint && last_checkpoint_iteration != it) {
    options.on_checkpoint(it, checkpoint());
  }
  if (result.outcome() == v1::TRIAL_OUTCOME_DIVERGED || !evaluated) {
    // The diverged model's own metrics (not reported as a curve point): the confusion matrix
    // shows what the divergence left. Its test loss may be NaN or Inf.
    last = Evaluate(*net, data, test_n, eval_chunk, loss, precision,
                    DeriveKey(DeriveKey(seed, kEvalTag), it));
    best_accuracy = std::max(best_accuracy, last.accuracy);
  }
  result.set_iterations(it);
  result.set_final_test_accuracy(last.accuracy);
  result.set_best_test_accuracy(best_accuracy);
  result.set_final_test_loss(last.loss);
  FillClassMetrics(last.confusion, k, &result);
  const double seconds = previous_seconds + std::chrono::duration<double>(train_time).count();
  result.set_train_seconds(seconds);
  result.set_images_per_second(seconds > 0 ? static_cast<double>(images_trained) / seconds : 0);
  return result;
}

}  // namespace
}  // namespace bitsweep::trainer
