// Quantiser throughput (issue 9): elements/s of Quantizer::Apply over a contiguous buffer for
// every format × rounding of DESIGN §4, on values like a training tensor's (normal, σ = 1,
// with a few subnormal and out-of-range values), plus ApplyMeasured (the statistics pass).
//
//   build/<dir>/bench/trainer/bitsweep_quantizer_bench [--benchmark_filter=fp16]
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr int64_t kElements = 1 << 16;  // 256 KiB: a large activation tensor, in L2

std::vector<float> Buffer() {
  CounterRng rng(1);
  std::vector<float> v(kElements);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>(rng.Normal());
    if (i % 97 == 0) v[i] *= 1e-30f;  // subnormal in narrow formats
    if (i % 101 == 0) v[i] *= 1e6f;   // saturates in narrow formats
  }
  return v;
}

void BM_Apply(benchmark::State& state, const std::string& spec, Rounding rounding, bool measured) {
  const Quantizer q(*ParseFormat(spec), rounding);
  const std::vector<float> source = Buffer();
  std::vector<float> data = source;
  uint64_t key = 0;
  QuantStats stats;
  for (auto _ : state) {
    // Quantising an already quantised buffer runs the same instructions (no data-dependent
    // shortcuts), so the buffer is not restored between iterations.
    if (measured) {
      q.ApplyMeasured(data.data(), kElements, ++key, &stats);
    } else {
      q.Apply(data.data(), kElements, ++key);
    }
    benchmark::DoNotOptimize(data.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

const char* const kFormats[] = {"fp16",    "bf16",        "tf32",      "fp8e5m2",
                                "fp8e4m3", "mask:12",     "float:6,9", "fixed:16,8",
                                "int:8",   "dynfixed:16", "dps:8,8"};

int Register() {
  for (const char* spec : kFormats) {
    for (Rounding r : {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic}) {
      const std::string name = std::string(spec) + "/" + std::string(RoundingName(r));
      benchmark::RegisterBenchmark(("Apply/" + name).c_str(), BM_Apply, spec, r, false);
    }
  }
  for (const char* spec : {"fp16", "mask:12", "fixed:16,8"}) {
    benchmark::RegisterBenchmark(("ApplyMeasured/" + std::string(spec) + "/stochastic").c_str(),
                                 BM_Apply, spec, Rounding::kStochastic, true);
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace bitsweep::trainer

BENCHMARK_MAIN();
