// Microbenchmarks of the trainer's kernels: quantisers over a buffer, conv and dense passes at
// the reference CNN's sizes.
#include <benchmark/benchmark.h>

#include <vector>

#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/dense.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

std::vector<float> RandomBuffer(int64_t n) {
  CounterRng rng(1);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal());
  return v;
}

void BM_Quantize(benchmark::State& state, const char* spec, Rounding rounding) {
  const Quantizer q(*ParseFormat(spec), rounding);
  const std::vector<float> source = RandomBuffer(1 << 16);
  std::vector<float> data = source;
  uint64_t key = 0;
  for (auto _ : state) {
    q.Apply(data.data(), static_cast<int64_t>(data.size()), ++key);
    benchmark::DoNotOptimize(data.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(data.size()));
}
BENCHMARK_CAPTURE(BM_Quantize, mask12_truncate, "mask:12", Rounding::kTruncate);
BENCHMARK_CAPTURE(BM_Quantize, mask12_nearest, "mask:12", Rounding::kNearest);
BENCHMARK_CAPTURE(BM_Quantize, mask12_stochastic, "mask:12", Rounding::kStochastic);
BENCHMARK_CAPTURE(BM_Quantize, fp16_nearest, "fp16", Rounding::kNearest);
BENCHMARK_CAPTURE(BM_Quantize, fp8e4m3_stochastic, "fp8e4m3", Rounding::kStochastic);
BENCHMARK_CAPTURE(BM_Quantize, fixed16_8_stochastic, "fixed:16,8", Rounding::kStochastic);
BENCHMARK_CAPTURE(BM_Quantize, int8_nearest, "int:8", Rounding::kNearest);

// The measuring pass (dynamic formats, CurvePoint.sites) against plain Apply above.
void BM_QuantizeMeasured(benchmark::State& state, const char* spec, Rounding rounding) {
  const Quantizer q(*ParseFormat(spec), rounding);
  std::vector<float> data = RandomBuffer(1 << 16);
  uint64_t key = 0;
  QuantStats stats;
  for (auto _ : state) {
    q.ApplyMeasured(data.data(), static_cast<int64_t>(data.size()), ++key, &stats);
    benchmark::DoNotOptimize(data.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(data.size()));
}
BENCHMARK_CAPTURE(BM_QuantizeMeasured, mask12_nearest, "mask:12", Rounding::kNearest);
BENCHMARK_CAPTURE(BM_QuantizeMeasured, fixed16_8_stochastic, "fixed:16,8", Rounding::kStochastic);

// The reference CNN's second conv layer: 32 -> 32 filters, 5x5, on 12x12, batch 128.
void BM_ConvForwardBackward(benchmark::State& state) {
  const ConvShape s{32, 12, 12, 32, 5};
  const int n = 128;
  const std::vector<float> in = RandomBuffer(n * s.in_size());
  const std::vector<float> w = RandomBuffer(s.weight_size());
  const std::vector<float> b(s.f, 0.0f);
  std::vector<float> out(n * s.out_size()), dw(w.size()), db(s.f), din(in.size());
  for (auto _ : state) {
    ConvForward(s, n, in.data(), w.data(), b.data(), out.data());
    ConvBackward(s, n, out.data(), in.data(), w.data(), dw.data(), db.data(), din.data());
    benchmark::DoNotOptimize(din.data());
  }
  // 3 GEMMs of 2·F·CKK·N·P flops each.
  state.counters["GFLOPS"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 3 * 2 * s.f * s.ckk() * n * s.p(),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_ConvForwardBackward);

// Each conv layer of the reference CNN alone, forward and backward (batch 128).
void BM_ConvForward(benchmark::State& state, ConvShape s) {
  const int n = 128;
  const std::vector<float> in = RandomBuffer(n * s.in_size());
  const std::vector<float> w = RandomBuffer(s.weight_size());
  const std::vector<float> b(s.f, 0.0f);
  std::vector<float> out(n * s.out_size());
  for (auto _ : state) {
    ConvForward(s, n, in.data(), w.data(), b.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2 * s.f * s.ckk() * n * s.p(),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK_CAPTURE(BM_ConvForward, conv0, ConvShape{1, 28, 28, 32, 5});
BENCHMARK_CAPTURE(BM_ConvForward, conv1, ConvShape{32, 12, 12, 32, 5});

void BM_ConvBackward(benchmark::State& state, ConvShape s, bool input_gradient) {
  const int n = 128;
  const std::vector<float> in = RandomBuffer(n * s.in_size());
  const std::vector<float> w = RandomBuffer(s.weight_size());
  const std::vector<float> dout = RandomBuffer(n * s.out_size());
  std::vector<float> dw(w.size()), db(s.f), din(in.size());
  for (auto _ : state) {
    ConvBackward(s, n, dout.data(), in.data(), w.data(), dw.data(), db.data(),
                 input_gradient ? din.data() : nullptr);
    benchmark::DoNotOptimize(dw.data());
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * (input_gradient ? 4 : 2) * s.f *
                             s.ckk() * n * s.p(),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK_CAPTURE(BM_ConvBackward, conv0, ConvShape{1, 28, 28, 32, 5}, false);
BENCHMARK_CAPTURE(BM_ConvBackward, conv1, ConvShape{32, 12, 12, 32, 5}, true);

void BM_DenseForwardBackward(benchmark::State& state) {
  const int n = 128, in_dim = 512, out_dim = 256;
  const std::vector<float> in = RandomBuffer(n * in_dim);
  const std::vector<float> w = RandomBuffer(out_dim * in_dim);
  const std::vector<float> b(out_dim, 0.0f);
  std::vector<float> out(n * out_dim), dw(w.size()), db(out_dim), din(in.size());
  for (auto _ : state) {
    DenseForward(n, in_dim, out_dim, in.data(), w.data(), b.data(), out.data());
    DenseBackward(n, in_dim, out_dim, out.data(), in.data(), w.data(), dw.data(), db.data(),
                  din.data());
    benchmark::DoNotOptimize(din.data());
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 3 * 2 * n * in_dim * out_dim,
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DenseForwardBackward);

}  // namespace
}  // namespace bitsweep::trainer

BENCHMARK_MAIN();
