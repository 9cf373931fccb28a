#include "worker/trainer/ops/conv.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/ops/accumulator_gemm.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/ops/transpose.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// The copy and sum loops below are short and data-bound: built for the baseline x86-64 they
// move 4 floats at a time. Each has a body compiled twice, for AVX2 and the baseline, chosen
// once at run time. They only copy, compare and add (no multiplies, so no fma contraction
// either way): the results are the same bits.
#define BS_GLUE __attribute__((optimize("no-tree-loop-distribute-patterns")))
#define BS_GLUE_AVX2 __attribute__((target("avx2"), optimize("no-tree-loop-distribute-patterns")))
#define BS_DISPATCH(name)                      \
  template <typename T, typename... Args>      \
  BS_GLUE_AVX2 void name##Avx2(Args... args) { \
    name##Body<T>(args...);                    \
  }                                            \
  template <typename T, typename... Args>      \
  BS_GLUE void name##Base(Args... args) {      \
    name##Body<T>(args...);                    \
  }                                            \
  template <typename T, typename... Args>      \
  void name(Args... args) {                    \
    if (HasAvx2()) {                           \
      name##Avx2<T>(args...);                  \
    } else {                                   \
      name##Base<T>(args...);                  \
    }                                          \
  }

bool HasAvx2() {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return avx2;
}

bool HasAvx512() {  // F and VL (every AVX-512 CPU so far has both)
  static const bool avx512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") &&
                                                        __builtin_cpu_supports("avx512vl"));
  return avx512;
}

// col [CKK, P] for one example: row r = (c, ki, kj) holds in[c][oy+ki][ox+kj] for every output
// position; each output row is a contiguous run of the input row (Caffe's im2col layout).
// Rows are short (8-24 floats in the reference CNN): a vectorised copy loop, not a memmove call
// per row (which GCC's loop distribution would otherwise emit).
template <typename T>
[[gnu::always_inline]] inline void Im2ColGenericBody(const ConvShape& s, const T* in, T* col) {
  const int oh = s.oh(), ow = s.ow();
  for (int c = 0; c < s.c; ++c) {
    const T* plane = in + int64_t{c} * s.h * s.w;
    for (int ki = 0; ki < s.k; ++ki) {
      for (int kj = 0; kj < s.k; ++kj) {
        T* dst = col + ((int64_t{c} * s.k + ki) * s.k + kj) * s.p();
        for (int oy = 0; oy < oh; ++oy) {
          const T* src = plane + int64_t{oy + ki} * s.w + kj;
          T* d = dst + int64_t{oy} * ow;
          for (int ox = 0; ox < ow; ++ox) d[ox] = src[ox];
        }
      }
    }
  }
}

// im2col(in)ᵀ [P, CKK] for one example: row p holds the CKK inputs output position p sees, in
// Im2Col's row order, so the weight gradient's B operand has contiguous rows (no transposing
// pack). Each (c, ki) contributes a run of K adjacent input values.
template <typename T>
[[gnu::always_inline]] inline void Im2ColTransposedGenericBody(const ConvShape& s, const T* in,
                                                               T* colt) {
  const int oh = s.oh(), ow = s.ow(), k = s.k;
  const int64_t ckk = s.ckk();
  for (int oy = 0; oy < oh; ++oy) {
    for (int ox = 0; ox < ow; ++ox) {
      T* dst = colt + (int64_t{oy} * ow + ox) * ckk;
      for (int c = 0; c < s.c; ++c) {
        const T* src = in + (int64_t{c} * s.h + oy) * s.w + ox;
        for (int ki = 0; ki < k; ++ki) {
          for (int kj = 0; kj < k; ++kj) dst[kj] = src[kj];
          dst += k;
          src += s.w;
        }
      }
    }
  }
}

// db[f] += Σ_i d[f][i] for each filter, each sum in increasing i as one chain. The filters'
// chains are independent: stepping them together keeps the adder busy (one chain alone waits
// out the add latency at every step).
template <typename T>
[[gnu::always_inline]] inline void AddRowSumsBody(const T* d, int f, int64_t p, T* db) {
  constexpr int kLanes = 8;
  int f0 = 0;
  for (; f0 + kLanes <= f; f0 += kLanes) {
    T acc[kLanes];
    for (int l = 0; l < kLanes; ++l) acc[l] = db[f0 + l];
    for (int64_t i = 0; i < p; ++i) {
      for (int l = 0; l < kLanes; ++l) acc[l] += d[(f0 + l) * p + i];
    }
    for (int l = 0; l < kLanes; ++l) db[f0 + l] = acc[l];
  }
  for (; f0 < f; ++f0) {
    T sum = db[f0];
    for (int64_t i = 0; i < p; ++i) sum += d[f0 * p + i];
    db[f0] = sum;
  }
}

// The adjoint of Im2Col for one example: din = scatter-add(dcol), din overwritten.
template <typename T>
[[gnu::always_inline]] inline void Col2ImGenericBody(const ConvShape& s, const T* dcol, T* din) {
  const int oh = s.oh(), ow = s.ow();
  std::fill(din, din + s.in_size(), T(0));
  for (int c = 0; c < s.c; ++c) {
    T* plane = din + int64_t{c} * s.h * s.w;
    for (int ki = 0; ki < s.k; ++ki) {
      for (int kj = 0; kj < s.k; ++kj) {
        const T* row = dcol + ((int64_t{c} * s.k + ki) * s.k + kj) * s.p();
        for (int oy = 0; oy < oh; ++oy) {
          T* d = plane + int64_t{oy + ki} * s.w + kj;
          const T* r = row + int64_t{oy} * ow;
          for (int ox = 0; ox < ow; ++ox) d[ox] += r[ox];
        }
      }
    }
  }
}

// row[i] = relu(row[i] + b) over each filter's row: the bias add and ActivationForward's ReLU
// (x < 0 ? 0 : x, NaN kept) in one pass.
template <typename T>
[[gnu::always_inline]] inline void AddBiasReluBody(const T* bias, int f, int64_t p, T* out) {
  for (int r = 0; r < f; ++r) {
    const T b = bias[r];
    T* row = out + r * p;
    for (int64_t i = 0; i < p; ++i) {
      const T v = row[i] + b;
      row[i] = v < T(0) ? T(0) : v;
    }
  }
}

BS_DISPATCH(AddBiasRelu)
BS_DISPATCH(Im2ColGeneric)
BS_DISPATCH(Im2ColTransposedGeneric)
BS_DISPATCH(AddRowSums)
BS_DISPATCH(Col2ImGeneric)
#undef BS_DISPATCH

// AVX-512 versions of the float copy loops: the short rows as 16-float vectors and one masked
// vector for the rest (no scalar tails, no alias checks per row).
__attribute__((target("avx512f"), always_inline)) inline void CopyRow(float* dst, const float* src,
                                                                      int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i + 8 <= n) {
    _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    i += 8;
  }
  if (i < n) {  // masked stores are slow when they split a cache line: only for odd tails
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, mask, _mm512_maskz_loadu_ps(mask, src + i));
  }
}

__attribute__((target("avx512f"))) void Im2ColAvx512(const ConvShape& s, const float* in,
                                                     float* col) {
  const int oh = s.oh(), ow = s.ow();
  for (int c = 0; c < s.c; ++c) {
    const float* plane = in + int64_t{c} * s.h * s.w;
    for (int ki = 0; ki < s.k; ++ki) {
      for (int kj = 0; kj < s.k; ++kj) {
        float* dst = col + ((int64_t{c} * s.k + ki) * s.k + kj) * s.p();
        for (int oy = 0; oy < oh; ++oy) {
          CopyRow(dst + int64_t{oy} * ow, plane + int64_t{oy + ki} * s.w + kj, ow);
        }
      }
    }
  }
}

// For K <= 8: each run as a masked load and a plain 8-float store, the runs in increasing
// order so each store's 8 - K extra lanes are overwritten by the next run; the last one spills
// into kIm2ColSlack floats past the end (masked stores that split cache lines are slow).
// Rows ldt >= CKK floats apart: a row's last 16 floats are zeroed first (with ldt - 16 <= CKK,
// the runs and their zero lanes cover the rest), so the padding columns hold zeros; with
// `ones`, the first padding column holds 1 (a product with it sums the other operand's rows).
__attribute__((target("avx512f,avx512vl"))) void Im2ColTransposedAvx512(const ConvShape& s,
                                                                        const float* in,
                                                                        float* colt, int64_t ldt,
                                                                        bool ones = false) {
  const int oh = s.oh(), ow = s.ow(), k = s.k;
  const __mmask8 mask = static_cast<__mmask8>((1u << k) - 1);
  const bool padded = ldt != s.ckk();
  for (int oy = 0; oy < oh; ++oy) {
    for (int ox = 0; ox < ow; ++ox) {
      float* dst = colt + (int64_t{oy} * ow + ox) * ldt;
      if (padded) _mm512_storeu_ps(dst + ldt - 16, _mm512_setzero_ps());
      for (int c = 0; c < s.c; ++c) {
        const float* src = in + (int64_t{c} * s.h + oy) * s.w + ox;
        for (int ki = 0; ki < k; ++ki) {
          _mm256_storeu_ps(dst, _mm256_maskz_loadu_ps(mask, src));
          dst += k;
          src += s.w;
        }
      }
      if (ones) *dst = 1.0f;  // column CKK, after the last run's spill
    }
  }
}

// Col2Im for input rows of at most 16 floats: each din row is summed in one register, its
// contributions added in Col2ImGenericBody's order ((ki, kj) increasing, from +0), each a masked
// add of a shifted dcol row, then stored once (read-modify-writes of overlapping rows would
// stall on store forwarding). kChannels channels' rows at a time: one row's adds form a single
// dependent chain, so a lone chain waits out the add latency at every step; the channels'
// chains are independent and interleave.
template <int kChannels>
__attribute__((target("avx512f"), always_inline)) inline void Col2ImRowsAvx512(const ConvShape& s,
                                                                               const float* dcol,
                                                                               int c, float* din) {
  const int oh = s.oh(), ow = s.ow();
  const __mmask16 row_mask = static_cast<__mmask16>((1u << ow) - 1);
  const __mmask16 out_mask = static_cast<__mmask16>((1u << s.w) - 1);
  const int64_t channel = int64_t{s.k} * s.k * s.p();  // one channel's dcol rows
  const float* plane = dcol + c * channel;
  for (int y = 0; y < s.h; ++y) {
    __m512 acc[kChannels];
    for (int i = 0; i < kChannels; ++i) acc[i] = _mm512_setzero_ps();
    for (int ki = std::max(0, y - oh + 1); ki <= std::min(s.k - 1, y); ++ki) {
      const float* row = plane + int64_t{ki} * s.k * s.p() + int64_t{y - ki} * ow;
      for (int kj = 0; kj < s.k; ++kj) {
        const __mmask16 mask = static_cast<__mmask16>(row_mask << kj);
        const float* at = row + int64_t{kj} * s.p() - kj;
        for (int i = 0; i < kChannels; ++i) {
          const __m512 v = _mm512_maskz_loadu_ps(mask, at + i * channel);
          acc[i] = _mm512_mask_add_ps(acc[i], mask, acc[i], v);
        }
      }
    }
    for (int i = 0; i < kChannels; ++i) {
      _mm512_mask_storeu_ps(din + ((int64_t{c} + i) * s.h + y) * s.w, out_mask, acc[i]);
    }
  }
}

__attribute__((target("avx512f"))) void Col2ImAvx512(const ConvShape& s, const float* dcol,
                                                     float* din) {
  int c = 0;
  for (; c + 4 <= s.c; c += 4) Col2ImRowsAvx512<4>(s, dcol, c, din);
  for (; c < s.c; ++c) Col2ImRowsAvx512<1>(s, dcol, c, din);
}

void Im2Col(const ConvShape& s, const float* in, float* col) {
  if (HasAvx512()) {
    Im2ColAvx512(s, in, col);
  } else {
    Im2ColGeneric<float>(s, in, col);
  }
}

void Im2Col(const ConvShape& s, const double* in, double* col) {
  Im2ColGeneric<double>(s, in, col);
}

void Im2ColTransposed(const ConvShape& s, const float* in, float* colt) {
  if (HasAvx512() && s.k <= 8) {
    Im2ColTransposedAvx512(s, in, colt, s.ckk());
  } else {
    Im2ColTransposedGeneric<float>(s, in, colt);
  }
}

void Col2Im(const ConvShape& s, const float* dcol, float* din) {
  if (HasAvx512() && s.w <= 16) {
    Col2ImAvx512(s, dcol, din);
  } else {
    Col2ImGeneric<float>(s, dcol, din);
  }
}

void Col2Im(const ConvShape& s, const double* dcol, double* din) {
  Col2ImGeneric<double>(s, dcol, din);
}

// One example's input in channel-last order: hwc[(y·W + x)·C + c] = in[(c·H + y)·W + x]. Then
// the C·K inputs that kernel row ki of output position (oy, ox) sees, over (kj, c), are
// adjacent: the weight gradient reads them in place (WeightGradientHwc).
void ToChannelLastScalar(const ConvShape& s, const float* in, float* hwc) {
  const int64_t plane = int64_t{s.h} * s.w;
  for (int64_t i = 0; i < plane; ++i) {
    float* dst = hwc + i * s.c;
    for (int c = 0; c < s.c; ++c) dst[c] = in[c * plane + i];
  }
}

void ToChannelLast(const ConvShape& s, const float* in, float* hwc) {
  if (HasAvx2() && s.c % 8 == 0 && int64_t{s.h} * s.w % 8 == 0) {
    // The same copy in 8×8 blocks transposed in registers.
    const int64_t plane = int64_t{s.h} * s.w;
    TransposeBlocksAvx2(in, plane, plane, s.c, hwc, s.c);
  } else {
    ToChannelLastScalar(s, in, hwc);
  }
}

// The weight gradient's columns in (ki, kj, c) order instead of (c, ki, kj): dw [F, K·K·C]
// (+)= d [F, P] · im2col(in)ᵀ with the columns permuted, one GemmRowRuns per kernel row, B read
// in place from the channel-last input. Each element's chain is the same as in the (c, ki, kj)
// layout; the group sums scatter each element back.
void WeightGradientHwc(const ConvShape& s, const float* d, const float* hwc, float* dw,
                       bool accumulate) {
  const int64_t kc = int64_t{s.k} * s.c;
  for (int ki = 0; ki < s.k; ++ki) {
    GemmRowRuns(s.f, kc, s.p(), d, s.p(), hwc + int64_t{ki} * s.w * s.c, s.c, s.ow(),
                int64_t{s.w} * s.c, dw + ki * kc, s.ckk(), accumulate);
  }
}

// Per-thread im2col scratch, allocated once per thread at its largest size.
template <typename T>
T* ThreadScratch(int64_t size) {
  thread_local std::vector<T> scratch;
  if (static_cast<int64_t>(scratch.size()) < size) scratch.resize(size);
  return scratch.data();
}

// out[j] = Σ_g sums[g·stride + j] for j < len, each a chain in increasing g (element-wise, so
// the loop runs over j in vectors with the same bits).
void AddGroups(const float* sums, int64_t stride, int groups, int64_t len, float* out) {
  std::copy(sums, sums + len, out);
  for (int g = 1; g < groups; ++g) {
    const float* src = sums + g * stride;
    for (int64_t j = 0; j < len; ++j) out[j] += src[j];
  }
}

}  // namespace

int64_t ConvGroupScratchSize(const ConvShape& s, int n) {
  const int64_t groups = (n + kConvGroup - 1) / kConvGroup;
  return groups * (s.f * ConvPaddedCkk(s) + s.f);
}

void ConvForward(const ConvShape& s, int n, const float* in, const float* weights,
                 const float* bias, float* out, const Activation* act,
                 const AccumulatorRounding* accumulator, const PoolOutput* pool) {
  const MatrixView w{weights, s.ckk(), 1};
  thread_local PackedMatrix packed_w;
  if (accumulator == nullptr) packed_w.Pack(s.f, s.ckk(), w);
  const PackedMatrix& pw = packed_w;  // the caller's, shared read-only with the tasks
  // With output rows of a multiple of 8 positions, the GEMM reads the input in place: B's row
  // (c, ki, kj) is the input at offset rows[·], its 8 positions from p at chunks[p / 8] (the
  // same values as im2col's, in the same order).
  const bool gather =
      accumulator == nullptr && s.ow() % 8 == 0 && GemmPackedGather8InPlace(pw, s.p());
  thread_local std::vector<int32_t> offsets;
  if (gather) {
    offsets.resize(s.ckk() + s.p() / 8);
    for (int c = 0; c < s.c; ++c) {
      for (int ki = 0; ki < s.k; ++ki) {
        for (int kj = 0; kj < s.k; ++kj) {
          offsets[(c * s.k + ki) * s.k + kj] = (c * s.h + ki) * s.w + kj;
        }
      }
    }
    for (int64_t q = 0; q < s.p() / 8; ++q) {
      offsets[s.ckk() + q] = static_cast<int32_t>(8 * q / s.ow() * s.w + 8 * q % s.ow());
    }
  }
  const int32_t* rows = offsets.data();
  const int32_t* chunks = rows + s.ckk();
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, n, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        float* col = gather ? nullptr : ThreadScratch<float>(s.ckk() * s.p());
        thread_local std::vector<float> activations;  // one example's, when out is not kept
        const bool keep = pool == nullptr || pool->keep_out;
        if (!keep && static_cast<int64_t>(activations.size()) < s.out_size()) {
          activations.resize(s.out_size());
        }
        for (int e = r.begin(); e < r.end(); ++e) {
          float* o = keep ? out + e * s.out_size() : activations.data();
          if (gather) {
            GemmPackedGather8(pw, s.p(), in + e * s.in_size(), rows, chunks, o, s.p());
          } else if (accumulator != nullptr) {
            Im2Col(s, in + e * s.in_size(), col);
            AccumulatorRounding rounding = *accumulator;
            rounding.key = DeriveKey(DeriveKey(accumulator->key, 0), static_cast<uint64_t>(e));
            AccumulatorGemm(s.f, s.p(), s.ckk(), w, MatrixView{col, s.p(), 1}, o, s.p(), false,
                            rounding, false);
          } else {
            Im2Col(s, in + e * s.in_size(), col);
            GemmPacked(pw, s.p(), MatrixView{col, s.p(), 1}, o, s.p(), false);
          }
          if (act != nullptr && *act == Activation::kRelu) {
            AddBiasRelu<float>(bias, s.f, s.p(), o);
          } else {
            for (int f = 0; f < s.f; ++f) {
              const float b = bias[f];
              float* row = o + f * s.p();
              for (int64_t i = 0; i < s.p(); ++i) row[i] += b;
            }
            if (act != nullptr) ActivationForward(*act, o, s.out_size());
          }
          if (pool != nullptr) {
            const int64_t po = e * pool->pool.out_size();
            MaxPoolForward(pool->pool, 1, o, pool->pooled + po, pool->argmax + po);
          }
        }
      },
      oneapi::tbb::simple_partitioner());
}

namespace {

// ConvBackward's body; with `pooled`, example e's dout is made in scratch from it.
void ConvBackwardImpl(const ConvShape& s, int n, const float* dout,
                      const PooledReluGradient* pooled, const float* in, const float* weights,
                      float* dweights, float* dbias, float* din,
                      const AccumulatorRounding* accumulator) {
  const int groups = (n + kConvGroup - 1) / kConvGroup;
  const int64_t wsize = s.weight_size();
  thread_local std::vector<float> partials;
  if (static_cast<int64_t>(partials.size()) < ConvGroupScratchSize(s, n)) {
    partials.resize(ConvGroupScratchSize(s, n));
  }
  const MatrixView wt{weights, 1, s.ckk()};  // Wᵀ [CKK, F]
  thread_local PackedMatrix packed_wt;
  if (accumulator == nullptr && din != nullptr) packed_wt.Pack(s.ckk(), s.f, wt);
  const PackedMatrix& pwt = packed_wt;
  // The weight gradient from the channel-last input when its kernel reads it in place (the
  // group sums then hold the columns in (ki, kj, c) order).
  const bool hwc = accumulator == nullptr && GemmRowRunsInPlace(s.f, int64_t{s.k} * s.c);
  // Else, for a CKK just under a multiple of 32 (the first layer's 25), the transposed im2col's
  // rows and the group sums' rows padded to whole 32-column panels (zeros in the padding): the
  // GEMM then reads every operand in place, with no partial panel to pack.
  const int64_t ldw =
      !hwc && accumulator == nullptr && HasAvx512() && s.k <= 8 && ConvPaddedCkk(s) - 16 <= s.ckk()
          ? ConvPaddedCkk(s)
          : s.ckk();
  // The padded weight gradient's first spare column, against a column of ones, is the bias
  // gradient: fma(d, 1, sum) is the same rounded sum as AddRowSums' sum + d, in the same order
  // (over the group's examples, each example's positions in increasing order), so the GEMM
  // makes it in lanes it computes anyway.
  const bool db_in_gemm = ldw > s.ckk();
  const int64_t gsize = s.f * ldw;                // one group's weight-gradient sums
  float* dw_groups = partials.data();             // [groups, F, ldw]
  float* db_groups = dw_groups + groups * gsize;  // [groups, F]
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, groups, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        float* col = ThreadScratch<float>(ConvThreadScratchSize(s));  // holds in_size too
        float* dcol = col + ConvPaddedCkk(s) * s.p() + kIm2ColSlack;
        float* made = dcol + s.ckk() * s.p();  // example e's dout, from `pooled`
        for (int g = r.begin(); g < r.end(); ++g) {
          float* dw = dw_groups + g * gsize;
          float* db = db_groups + int64_t{g} * s.f;
          std::fill(db, db + s.f, 0.0f);
          const int e_end = std::min(n, (g + 1) * kConvGroup);
          for (int e = g * kConvGroup; e < e_end; ++e) {
            if (pooled != nullptr) {
              const int64_t o = e * pooled->pool.out_size();
              MaxPoolReluBackward(pooled->pool, 1, pooled->dpooled + o, pooled->argmax + o,
                                  pooled->pooled + o, made);
            }
            const float* d = pooled != nullptr ? made : dout + e * s.out_size();
            // dw (+)= d_e [F, P] · col_eᵀ [P, CKK].
            if (accumulator != nullptr) {
              Im2Col(s, in + e * s.in_size(), col);
              AccumulatorRounding rounding = *accumulator;
              rounding.key = DeriveKey(DeriveKey(accumulator->key, 2), static_cast<uint64_t>(e));
              AccumulatorGemm(s.f, s.ckk(), s.p(), MatrixView{d, s.p(), 1},
                              MatrixView{col, 1, s.p()}, dw, s.ckk(), e > g * kConvGroup, rounding,
                              false);
            } else if (hwc) {
              ToChannelLast(s, in + e * s.in_size(), col);
              WeightGradientHwc(s, d, col, dw, e > g * kConvGroup);
            } else if (ldw != s.ckk()) {
              Im2ColTransposedAvx512(s, in + e * s.in_size(), col, ldw, db_in_gemm);
              Gemm(s.f, ldw, s.p(), MatrixView{d, s.p(), 1}, MatrixView{col, ldw, 1}, dw, ldw,
                   e > g * kConvGroup);
            } else {
              Im2ColTransposed(s, in + e * s.in_size(), col);
              Gemm(s.f, s.ckk(), s.p(), MatrixView{d, s.p(), 1}, MatrixView{col, s.ckk(), 1}, dw,
                   s.ckk(), e > g * kConvGroup);
            }
            if (!db_in_gemm) AddRowSums<float>(d, s.f, s.p(), db);
            if (din != nullptr) {
              if (accumulator != nullptr) {
                AccumulatorRounding rounding = *accumulator;
                rounding.key = DeriveKey(DeriveKey(accumulator->key, 1), static_cast<uint64_t>(e));
                AccumulatorGemm(s.ckk(), s.p(), s.f, wt, MatrixView{d, s.p(), 1}, dcol, s.p(),
                                false, rounding, false);
              } else {
                GemmPacked(pwt, s.p(), MatrixView{d, s.p(), 1}, dcol, s.p(), false);
              }
              Col2Im(s, dcol, din + e * s.in_size());
            }
          }
          if (db_in_gemm) {
            for (int f = 0; f < s.f; ++f) db[f] = dw[f * ldw + s.ckk()];
          }
        }
      },
      oneapi::tbb::simple_partitioner());
  // The groups' sums, added in group order (element-wise, so split freely).
  if (accumulator == nullptr) {
    // A filter's sums as runs of adjacent elements, added as vectors: channel-last, the C
    // channels of one (ki, kj) (then scattered to their (c, ki, kj) places), else the
    // filter's CKK row.
    const int64_t kk = int64_t{s.k} * s.k;
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int>(0, s.f, 1),
        [&](const oneapi::tbb::blocked_range<int>& r) {
          thread_local std::vector<float> run;
          if (hwc && static_cast<int>(run.size()) < s.c) run.resize(s.c);
          for (int f = r.begin(); f < r.end(); ++f) {
            if (!hwc) {
              AddGroups(dw_groups + f * ldw, gsize, groups, s.ckk(), dweights + f * s.ckk());
              continue;
            }
            for (int64_t kikj = 0; kikj < kk; ++kikj) {
              AddGroups(dw_groups + f * s.ckk() + kikj * s.c, gsize, groups, s.c, run.data());
              float* dst = dweights + f * s.ckk() + kikj;
              for (int c = 0; c < s.c; ++c) dst[c * kk] = run[c];
            }
          }
        },
        oneapi::tbb::simple_partitioner());
  } else {
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int64_t>(0, wsize, 4096),
        [&](const oneapi::tbb::blocked_range<int64_t>& r) {
          for (int64_t i = r.begin(); i < r.end(); ++i) {
            const int64_t at = i / s.ckk() * ldw + i % s.ckk();
            float sum = dw_groups[at];
            for (int g = 1; g < groups; ++g) {
              sum += dw_groups[g * gsize + at];
              const uint64_t key = DeriveKey(DeriveKey(accumulator->key, 3), g);
              sum = accumulator->quantizer->QuantizeOne(sum, ElementRandom(key, i));
            }
            dweights[i] = sum;
          }
        },
        oneapi::tbb::simple_partitioner());
  }
  for (int f = 0; f < s.f; ++f) {
    float sum = db_groups[f];
    for (int g = 1; g < groups; ++g) sum += db_groups[int64_t{g} * s.f + f];
    dbias[f] = sum;
  }
}

}  // namespace

void ConvBackward(const ConvShape& s, int n, const float* dout, const float* in,
                  const float* weights, float* dweights, float* dbias, float* din,
                  const AccumulatorRounding* accumulator) {
  ConvBackwardImpl(s, n, dout, nullptr, in, weights, dweights, dbias, din, accumulator);
}

void ConvBackward(const ConvShape& s, int n, const PooledReluGradient& dout, const float* in,
                  const float* weights, float* dweights, float* dbias, float* din) {
  ConvBackwardImpl(s, n, nullptr, &dout, in, weights, dweights, dbias, din, nullptr);
}

void ConvForward(const ConvShape& s, int n, const double* in, const double* weights,
                 const double* bias, double* out, const Activation* act) {
  const DoubleMatrixView w{weights, s.ckk(), 1};
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, n, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        double* col = ThreadScratch<double>(s.ckk() * s.p());
        for (int e = r.begin(); e < r.end(); ++e) {
          Im2Col(s, in + e * s.in_size(), col);
          double* o = out + e * s.out_size();
          Gemm(s.f, s.p(), s.ckk(), w, DoubleMatrixView{col, s.p(), 1}, o, s.p(), false);
          for (int f = 0; f < s.f; ++f) {
            const double b = bias[f];
            double* row = o + f * s.p();
            for (int64_t i = 0; i < s.p(); ++i) row[i] += b;
          }
          if (act != nullptr) ActivationForward(*act, o, s.out_size());
        }
      },
      oneapi::tbb::simple_partitioner());
}

void ConvBackward(const ConvShape& s, int n, const double* dout, const double* in,
                  const double* weights, double* dweights, double* dbias, double* din) {
  // The float pass's structure: per-group sums in example order, then the groups in order.
  const int groups = (n + kConvGroup - 1) / kConvGroup;
  const int64_t wsize = s.weight_size();
  thread_local std::vector<double> partials;
  if (static_cast<int64_t>(partials.size()) < ConvGroupScratchSize(s, n)) {
    partials.resize(ConvGroupScratchSize(s, n));
  }
  double* dw_groups = partials.data();             // [groups, F, CKK]
  double* db_groups = dw_groups + groups * wsize;  // [groups, F]
  const DoubleMatrixView wt{weights, 1, s.ckk()};  // Wᵀ [CKK, F]
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, groups, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        double* col = ThreadScratch<double>(2 * s.ckk() * s.p());
        double* dcol = col + s.ckk() * s.p();
        for (int g = r.begin(); g < r.end(); ++g) {
          double* dw = dw_groups + g * wsize;
          double* db = db_groups + int64_t{g} * s.f;
          std::fill(db, db + s.f, 0.0);
          const int e_end = std::min(n, (g + 1) * kConvGroup);
          for (int e = g * kConvGroup; e < e_end; ++e) {
            const double* d = dout + e * s.out_size();
            Im2Col(s, in + e * s.in_size(), col);
            Gemm(s.f, s.ckk(), s.p(), DoubleMatrixView{d, s.p(), 1},
                 DoubleMatrixView{col, 1, s.p()}, dw, s.ckk(), e > g * kConvGroup);
            AddRowSums<double>(d, s.f, s.p(), db);
            if (din != nullptr) {
              Gemm(s.ckk(), s.p(), s.f, wt, DoubleMatrixView{d, s.p(), 1}, dcol, s.p(), false);
              Col2Im(s, dcol, din + e * s.in_size());
            }
          }
        }
      },
      oneapi::tbb::simple_partitioner());
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int64_t>(0, wsize, 4096),
      [&](const oneapi::tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) {
          double sum = dw_groups[i];
          for (int g = 1; g < groups; ++g) sum += dw_groups[g * wsize + i];
          dweights[i] = sum;
        }
      },
      oneapi::tbb::simple_partitioner());
  for (int f = 0; f < s.f; ++f) {
    double sum = db_groups[f];
    for (int g = 1; g < groups; ++g) sum += db_groups[int64_t{g} * s.f + f];
    dbias[f] = sum;
  }
}

}  // namespace bitsweep::trainer
