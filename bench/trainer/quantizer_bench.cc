// Quantiser throughput (issue 9): elements/s of Quantizer::Apply over a contiguous buffer for
// every format × rounding of DESIGN §4, on values like a training tensor's (normal, σ = 1,
// with a few subnormal and out-of-range values), plus ApplyMeasured (the statistics pass) and
// ApplyMarked (the activations site: rounding and clip marks). The narrow formats also run on
// ReLU activations (half zeros) and on errors (σ = 1e-5: most of them below fp16's 2^-14).
//
//   build/<dir>/bench/trainer/bitsweep_quantizer_bench [--benchmark_filter=fp16]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr int64_t kElements = 1 << 16;  // 256 KiB: a large activation tensor, in L2

enum class Values { kTraining, kRelu, kErrors };

std::vector<float> Buffer(Values kind = Values::kTraining) {
  CounterRng rng(1);
  std::vector<float> v(kElements);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>(rng.Normal());
    if (kind == Values::kRelu) {
      v[i] = std::max(v[i], 0.0f) * 0.1f;
    } else if (kind == Values::kErrors) {
      v[i] *= 1e-5f;
    } else {
      if (i % 97 == 0) v[i] *= 1e-30f;  // subnormal in narrow formats
      if (i % 101 == 0) v[i] *= 1e6f;   // saturates in narrow formats
    }
  }
  return v;
}

enum class Call { kApply, kMeasured, kMarked };

void BM_Apply(benchmark::State& state, const std::string& spec, Rounding rounding, Call call,
              Values values) {
  const Quantizer q(*ParseFormat(spec), rounding);
  const std::vector<float> source = Buffer(values);
  std::vector<uint8_t> marks(kElements);
  std::vector<float> data = source;
  uint64_t key = 0;
  QuantStats stats;
  for (auto _ : state) {
    // Quantising an already quantised buffer runs the same instructions (no data-dependent
    // shortcuts), so the buffer is not restored between iterations.
    if (call == Call::kMeasured) {
      q.ApplyMeasured(data.data(), kElements, ++key, &stats);
    } else if (call == Call::kMarked) {
      benchmark::DoNotOptimize(q.ApplyMarked(data.data(), kElements, ++key, marks.data()));
    } else {
      q.Apply(data.data(), kElements, ++key);
    }
    benchmark::DoNotOptimize(data.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

const char* const kFormats[] = {"fp16",       "float:4,3", "bf16",        "tf32",
                                "fp8e5m2",    "fp8e4m3",   "mask:12",     "float:6,9",
                                "fixed:16,8", "int:8",     "dynfixed:16", "dps:8,8"};

int Register() {
  for (const char* spec : kFormats) {
    for (Rounding r : {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic}) {
      const std::string name = std::string(spec) + "/" + std::string(RoundingName(r));
      benchmark::RegisterBenchmark(("Apply/" + name).c_str(), BM_Apply, spec, r, Call::kApply,
                                   Values::kTraining);
    }
  }
  for (const char* spec : {"fp16", "fp8e4m3", "mask:12"}) {
    const std::string name = std::string(spec) + "/stochastic";
    benchmark::RegisterBenchmark(("Apply/" + name + "/relu").c_str(), BM_Apply, spec,
                                 Rounding::kStochastic, Call::kApply, Values::kRelu);
    benchmark::RegisterBenchmark(("Apply/" + name + "/errors").c_str(), BM_Apply, spec,
                                 Rounding::kStochastic, Call::kApply, Values::kErrors);
    benchmark::RegisterBenchmark(("ApplyMarked/" + name + "/relu").c_str(), BM_Apply, spec,
                                 Rounding::kStochastic, Call::kMarked, Values::kRelu);
  }
  for (const char* spec : {"fp16", "mask:12", "fixed:16,8"}) {
    benchmark::RegisterBenchmark(("ApplyMeasured/" + std::string(spec) + "/stochastic").c_str(),
                                 BM_Apply, spec, Rounding::kStochastic, Call::kMeasured,
                                 Values::kTraining);
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace bitsweep::trainer

BENCHMARK_MAIN();
