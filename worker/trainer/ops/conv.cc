#include "worker/trainer/ops/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// col [CKK, P] for one example: row r = (c, ki, kj) holds in[c][oy+ki][ox+kj] for every output
// position; each output row is a contiguous run of the input row (Caffe's im2col layout).
// Rows are short (8-24 floats in the reference CNN): a vectorised copy loop, not a memmove call
// per row (which GCC's loop distribution would otherwise emit).
template <typename T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void Im2Col(const ConvShape& s,
                                                                          const T* in, T* col) {
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
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void Im2ColTransposed(
    const ConvShape& s, const T* in, T* colt) {
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
void AddRowSums(const T* d, int f, int64_t p, T* db) {
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
void Col2Im(const ConvShape& s, const T* dcol, T* din) {
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

// Per-thread im2col scratch, allocated once per thread at its largest size.
template <typename T>
T* ThreadScratch(int64_t size) {
  thread_local std::vector<T> scratch;
  if (static_cast<int64_t>(scratch.size()) < size) scratch.resize(size);
  return scratch.data();
}

}  // namespace

int64_t ConvGroupScratchSize(const ConvShape& s, int n) {
  const int64_t groups = (n + kConvGroup - 1) / kConvGroup;
  return groups * (s.weight_size() + s.f);
}

void ConvForward(const ConvShape& s, int n, const float* in, const float* weights,
                 const float* bias, float* out, const Activation* act,
                 const AccumulatorRounding* accumulator) {
  const MatrixView w{weights, s.ckk(), 1};
  thread_local PackedMatrix packed_w;
  if (accumulator == nullptr) packed_w.Pack(s.f, s.ckk(), w);
  const PackedMatrix& pw = packed_w;  // the caller's, shared read-only with the tasks
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, n, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        float* col = ThreadScratch<float>(s.ckk() * s.p());
        for (int e = r.begin(); e < r.end(); ++e) {
          Im2Col(s, in + e * s.in_size(), col);
          float* o = out + e * s.out_size();
          if (accumulator != nullptr) {
            AccumulatorRounding rounding = *accumulator;
            rounding.key = DeriveKey(DeriveKey(accumulator->key, 0), static_cast<uint64_t>(e));
            AccumulatorGemm(s.f, s.p(), s.ckk(), w, MatrixView{col, s.p(), 1}, o, s.p(), false,
                            rounding, false);
          } else {
            GemmPacked(pw, s.p(), MatrixView{col, s.p(), 1}, o, s.p(), false);
          }
          for (int f = 0; f < s.f; ++f) {
            const float b = bias[f];
            float* row = o + f * s.p();
            for (int64_t i = 0; i < s.p(); ++i) row[i] += b;
          }
          if (act != nullptr) ActivationForward(*act, o, s.out_size());
        }
      },
      oneapi::tbb::simple_partitioner());
}

void ConvBackward(const ConvShape& s, int n, const float* dout, const float* in,
                  const float* weights, float* dweights, float* dbias, float* din,
                  const AccumulatorRounding* accumulator) {
  const int groups = (n + kConvGroup - 1) / kConvGroup;
  const int64_t wsize = s.weight_size();
  thread_local std::vector<float> partials;
  if (static_cast<int64_t>(partials.size()) < ConvGroupScratchSize(s, n)) {
    partials.resize(ConvGroupScratchSize(s, n));
  }
  float* dw_groups = partials.data();             // [groups, F, CKK]
  float* db_groups = dw_groups + groups * wsize;  // [groups, F]
  const MatrixView wt{weights, 1, s.ckk()};       // Wᵀ [CKK, F]
  thread_local PackedMatrix packed_wt;
  if (accumulator == nullptr && din != nullptr) packed_wt.Pack(s.ckk(), s.f, wt);
  const PackedMatrix& pwt = packed_wt;
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int>(0, groups, 1),
      [&](const oneapi::tbb::blocked_range<int>& r) {
        float* col = ThreadScratch<float>(2 * s.ckk() * s.p());
        float* dcol = col + s.ckk() * s.p();
        for (int g = r.begin(); g < r.end(); ++g) {
          float* dw = dw_groups + g * wsize;
          float* db = db_groups + int64_t{g} * s.f;
          std::fill(db, db + s.f, 0.0f);
          const int e_end = std::min(n, (g + 1) * kConvGroup);
          for (int e = g * kConvGroup; e < e_end; ++e) {
            const float* d = dout + e * s.out_size();
            // dw (+)= d_e [F, P] · col_eᵀ [P, CKK].
            if (accumulator != nullptr) {
              Im2Col(s, in + e * s.in_size(), col);
              AccumulatorRounding rounding = *accumulator;
              rounding.key = DeriveKey(DeriveKey(accumulator->key, 2), static_cast<uint64_t>(e));
              AccumulatorGemm(s.f, s.ckk(), s.p(), MatrixView{d, s.p(), 1},
                              MatrixView{col, 1, s.p()}, dw, s.ckk(), e > g * kConvGroup, rounding,
                              false);
            } else {
              Im2ColTransposed(s, in + e * s.in_size(), col);
              Gemm(s.f, s.ckk(), s.p(), MatrixView{d, s.p(), 1}, MatrixView{col, s.ckk(), 1}, dw,
                   s.ckk(), e > g * kConvGroup);
            }
            AddRowSums(d, s.f, s.p(), db);
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
        }
      },
      oneapi::tbb::simple_partitioner());
  // The groups' sums, added in group order (element-wise, so split freely).
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int64_t>(0, wsize, 4096),
      [&](const oneapi::tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) {
          float sum = dw_groups[i];
          for (int g = 1; g < groups; ++g) {
            sum += dw_groups[g * wsize + i];
            if (accumulator != nullptr) {
              const uint64_t key = DeriveKey(DeriveKey(accumulator->key, 3), g);
              sum = accumulator->quantizer->QuantizeOne(sum, ElementRandom(key, i));
            }
          }
          dweights[i] = sum;
        }
      },
      oneapi::tbb::simple_partitioner());
  for (int f = 0; f < s.f; ++f) {
    float sum = db_groups[f];
    for (int g = 1; g < groups; ++g) sum += db_groups[int64_t{g} * s.f + f];
    dbias[f] = sum;
  }
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
            AddRowSums(d, s.f, s.p(), db);
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
