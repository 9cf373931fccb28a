#include "worker/trainer/ops/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/ops/transpose.h"

namespace bitsweep::trainer {
namespace {

// A micro-kernel: C[mr×nr] (row stride ldc) = (load ? C : 0) + Apanel·Bpanel over kc, where
// Apanel holds, for each k, mr values of A's column k, and Bpanel, for each k, nr contiguous
// values of B's row k at b + k·ldb (ldb = nr for a packed panel; B's own row stride when its
// rows are contiguous and need no packing). Each C element is the fma chain of gemm.h.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                             int64_t ldc, bool load);
// The same with A read in place: A's rows contiguous in k, row r at a + r·lda.
using DirectAMicroKernel = void (*)(int64_t kc, const float* a, int64_t lda, const float* b,
                                    int64_t ldb, float* c, int64_t ldc, bool load);

struct Kernel {
  const char* name;
  int mr, nr;
  MicroKernel fn;
  DirectAMicroKernel direct_a;  // null: A is always packed
};

// Cache blocking: an A block (kMc × kKc) stays in L2, a B micro-panel (kKc × nr) in L1.
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 96;
constexpr int64_t kNc = 512;
// A is read in place (when its rows are contiguous) for products at most this wide.
constexpr int64_t kDirectAMaxN = 64;

// 16 floats from two 8-float halves: the low one broadcast, the high one inserted over it. (The
// masked forms: GCC 12's unmasked ones warn of an undefined pass-through operand.)
__attribute__((target("avx512f"), always_inline)) inline __m512 TwoHalves(const float* lo,
                                                                          const float* hi) {
  const __m512d low = _mm512_maskz_broadcast_f64x4(0xFF, _mm256_castps_pd(_mm256_loadu_ps(lo)));
  return _mm512_castpd_ps(
      _mm512_mask_insertf64x4(low, 0xFF, low, _mm256_castps_pd(_mm256_loadu_ps(hi)), 1));
}

// kDirectA: A read in place (row r at a + r·lda, contiguous in k) instead of from a packed
// panel; the products and their order are the same. kRunsB: B's rows come in runs of `run`
// rows ldb apart, each run `run_skip` floats further than the previous run's end (GemmRowRuns).
// kGatherB: B's row p is not at b + p·ldb but gathered, its four 8-column quarters at
// b + chunks[q] + rows[p] (GemmPackedGather8).
template <bool kDirectA, bool kRunsB = false, bool kGatherB = false>
__attribute__((target("avx512f"), always_inline)) inline void MicroAvx512Body(
    int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
    bool load, int64_t run = 0, int64_t run_skip = 0, const int32_t* rows = nullptr,
    const int32_t* chunks = nullptr) {
  // 8 rows × 32 columns: 16 accumulators.
  __m512 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b, c6a, c6b, c7a, c7b;
  if (load) {
#define BS_LOAD(r)                        \
  c##r##a = _mm512_loadu_ps(c + r * ldc); \
  c##r##b = _mm512_loadu_ps(c + r * ldc + 16);
    BS_LOAD(0) BS_LOAD(1) BS_LOAD(2) BS_LOAD(3) BS_LOAD(4) BS_LOAD(5) BS_LOAD(6) BS_LOAD(7)
#undef BS_LOAD
  } else {
    c0a = c0b = c1a = c1b = c2a = c2b = c3a = c3b = _mm512_setzero_ps();
    c4a = c4b = c5a = c5b = c6a = c6b = c7a = c7b = _mm512_setzero_ps();
  }
  const float* a4 = a + 4 * lda;  // rows 4-7 in direct mode: base + {0,1,2,3}·lda each
  int64_t left = run;             // rows before the next run (kRunsB)
  const float* q0 = kGatherB ? b + chunks[0] : nullptr;
  const float* q1 = kGatherB ? b + chunks[1] : nullptr;
  const float* q2 = kGatherB ? b + chunks[2] : nullptr;
  const float* q3 = kGatherB ? b + chunks[3] : nullptr;
  for (int64_t p = 0; p < kc; ++p) {
    __m512 ba, bb;
    if (kGatherB) {
      const int64_t o = rows[p];
      ba = TwoHalves(q0 + o, q1 + o);
      bb = TwoHalves(q2 + o, q3 + o);
    } else {
      ba = _mm512_loadu_ps(b);
      bb = _mm512_loadu_ps(b + 16);
    }
#define BS_FMA(r, ptr)                                                      \
  {                                                                         \
    const __m512 ar = _mm512_set1_ps(kDirectA ? ptr[(r % 4) * lda] : a[r]); \
    c##r##a = _mm512_fmadd_ps(ar, ba, c##r##a);                             \
    c##r##b = _mm512_fmadd_ps(ar, bb, c##r##b);                             \
  }
    BS_FMA(0, a)
    BS_FMA(1, a)
    BS_FMA(2, a)
    BS_FMA(3, a)
    BS_FMA(4, a4)
    BS_FMA(5, a4)
    BS_FMA(6, a4)
    BS_FMA(7, a4)
#undef BS_FMA
    if (kDirectA) {
      a += 1;
      a4 += 1;
    } else {
      a += 8;
    }
    b += ldb;
    if (kRunsB && --left == 0) {
      left = run;
      b += run_skip;
    }
  }
#define BS_STORE(r)                       \
  _mm512_storeu_ps(c + r * ldc, c##r##a); \
  _mm512_storeu_ps(c + r * ldc + 16, c##r##b);
  BS_STORE(0) BS_STORE(1) BS_STORE(2) BS_STORE(3) BS_STORE(4) BS_STORE(5) BS_STORE(6) BS_STORE(7)
#undef BS_STORE
}

__attribute__((target("avx512f"))) void MicroAvx512(int64_t kc, const float* a, const float* b,
                                                    int64_t ldb, float* c, int64_t ldc, bool load) {
  MicroAvx512Body<false>(kc, a, 0, b, ldb, c, ldc, load);
}

__attribute__((target("avx512f"))) void MicroAvx512DirectA(int64_t kc, const float* a, int64_t lda,
                                                           const float* b, int64_t ldb, float* c,
                                                           int64_t ldc, bool load) {
  MicroAvx512Body<true>(kc, a, lda, b, ldb, c, ldc, load);
}

__attribute__((target("avx2,fma"))) void MicroAvx2(int64_t kc, const float* a, const float* b,
                                                   int64_t ldb, float* c, int64_t ldc, bool load) {
  // 6 rows × 16 columns: 12 accumulators.
  __m256 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b;
  if (load) {
#define BS_LOAD(r)                        \
  c##r##a = _mm256_loadu_ps(c + r * ldc); \
  c##r##b = _mm256_loadu_ps(c + r * ldc + 8);
    BS_LOAD(0) BS_LOAD(1) BS_LOAD(2) BS_LOAD(3) BS_LOAD(4) BS_LOAD(5)
#undef BS_LOAD
  } else {
    c0a = c0b = c1a = c1b = c2a = c2b = _mm256_setzero_ps();
    c3a = c3b = c4a = c4b = c5a = c5b = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 ba = _mm256_loadu_ps(b);
    const __m256 bb = _mm256_loadu_ps(b + 8);
#define BS_FMA(r)                                 \
  {                                               \
    const __m256 ar = _mm256_broadcast_ss(a + r); \
    c##r##a = _mm256_fmadd_ps(ar, ba, c##r##a);   \
    c##r##b = _mm256_fmadd_ps(ar, bb, c##r##b);   \
  }
    BS_FMA(0)
    BS_FMA(1)
    BS_FMA(2)
    BS_FMA(3)
    BS_FMA(4)
    BS_FMA(5)
#undef BS_FMA
    a += 6;
    b += ldb;
  }
#define BS_STORE(r)                       \
  _mm256_storeu_ps(c + r * ldc, c##r##a); \
  _mm256_storeu_ps(c + r * ldc + 8, c##r##b);
  BS_STORE(0) BS_STORE(1) BS_STORE(2) BS_STORE(3) BS_STORE(4) BS_STORE(5)
#undef BS_STORE
}

// Any machine: std::fma is the correctly rounded fused multiply-add, whatever the hardware.
void MicroPortable(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                   bool load) {
  constexpr int kMr = 4, kNr = 16;
  float acc[kMr][kNr];
  for (int r = 0; r < kMr; ++r) {
    for (int j = 0; j < kNr; ++j) acc[r][j] = load ? c[r * ldc + j] : 0.0f;
  }
  for (int64_t p = 0; p < kc; ++p) {
    for (int r = 0; r < kMr; ++r) {
      for (int j = 0; j < kNr; ++j) acc[r][j] = std::fma(a[r], b[j], acc[r][j]);
    }
    a += kMr;
    b += ldb;
  }
  for (int r = 0; r < kMr; ++r) {
    for (int j = 0; j < kNr; ++j) c[r * ldc + j] = acc[r][j];
  }
}

__attribute__((target("avx512f"))) void MicroAvx512GatherB(int64_t kc, const float* a,
                                                           const float* b, const int32_t* rows,
                                                           const int32_t* chunks, float* c,
                                                           int64_t ldc, bool load) {
  MicroAvx512Body<false, false, true>(kc, a, 0, b, 0, c, ldc, load, 0, 0, rows, chunks);
}

__attribute__((target("avx512f"))) void MicroAvx512DirectARunsB(int64_t kc, const float* a,
                                                                int64_t lda, const float* b,
                                                                int64_t ldb, int64_t run,
                                                                int64_t run_skip, float* c,
                                                                int64_t ldc, bool load) {
  MicroAvx512Body<true, true>(kc, a, lda, b, ldb, c, ldc, load, run, run_skip);
}

constexpr Kernel kAvx512{"avx512", 8, 32, MicroAvx512, MicroAvx512DirectA};
constexpr Kernel kAvx2{"avx2", 6, 16, MicroAvx2, nullptr};
constexpr Kernel kPortable{"portable", 4, 16, MicroPortable, nullptr};

bool Supported(const Kernel& k) {
  if (k.fn == MicroAvx512) return __builtin_cpu_supports("avx512f");
  if (k.fn == MicroAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return true;
}

const Kernel& BestKernel() {
  static const Kernel& best = Supported(kAvx512) ? kAvx512 : Supported(kAvx2) ? kAvx2 : kPortable;
  return best;
}

// Per-thread packing buffers: allocated once per thread, at their largest size.
struct PackBuffers {
  std::vector<float> a, b;
};

void PackA(const Kernel& kr, int64_t mc, int64_t kc, const MatrixView& a, int64_t i0, int64_t p0,
           float* out) {
  const int mr = kr.mr;
  for (int64_t ir = 0; ir < mc; ir += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
    const float* base = a.data + (i0 + ir) * a.row_stride + p0 * a.col_stride;
    if (a.col_stride == 1) {
      // Rows of A are contiguous: read them in order, write with stride mr.
      for (int r = 0; r < rows; ++r) {
        const float* src = base + r * a.row_stride;
        for (int64_t p = 0; p < kc; ++p) out[p * mr + r] = src[p];
      }
      for (int r = rows; r < mr; ++r) {
        for (int64_t p = 0; p < kc; ++p) out[p * mr + r] = 0.0f;
      }
      out += kc * mr;
      continue;
    }
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = base + p * a.col_stride;
      int r = 0;
      for (; r < rows; ++r) out[r] = src[r * a.row_stride];
      for (; r < mr; ++r) out[r] = 0.0f;
      out += mr;
    }
  }
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) void PackB(const Kernel& kr,
                                                                         int64_t nc, int64_t kc,
                                                                         const MatrixView& b,
                                                                         int64_t p0, int64_t j0,
                                                                         float* out) {
  const int nr = kr.nr;
  for (int64_t jr = 0; jr < nc; jr += nr) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
    const float* base = b.data + p0 * b.row_stride + (j0 + jr) * b.col_stride;
    if (b.row_stride == 1) {
      // Columns of B are contiguous (a transposed operand): 8×8 blocks transposed in
      // registers (the AVX kernels' machines have AVX2), the rest read in order.
      int j = 0;
      if (kr.fn != MicroPortable && kc % 8 == 0) {
        j = cols / 8 * 8;
        TransposeBlocksAvx2(base, b.col_stride, kc, j, out, nr);
      }
      for (; j < cols; ++j) {
        const float* src = base + j * b.col_stride;
        for (int64_t p = 0; p < kc; ++p) out[p * nr + j] = src[p];
      }
      for (j = cols; j < nr; ++j) {
        for (int64_t p = 0; p < kc; ++p) out[p * nr + j] = 0.0f;
      }
      out += kc * nr;
      continue;
    }
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = base + p * b.row_stride;
      int j = 0;
      if (b.col_stride == 1) {
        for (; j < cols; ++j) out[j] = src[j];  // short rows: a vector copy, not a call
      } else {
        for (; j < cols; ++j) out[j] = src[j * b.col_stride];
      }
      for (; j < nr; ++j) out[j] = 0.0f;
      out += nr;
    }
  }
}

// prepacked_a: A packed by PackedMatrix::Pack (block (pc, ic) at pc·m_pad + ic·kc), or null.
void GemmImpl(const Kernel& kr, int64_t m, int64_t n, int64_t k, const MatrixView& a,
              const MatrixView& b, float* c, int64_t ldc, bool accumulate,
              const float* prepacked_a = nullptr) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) {
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    }
    return;
  }
  const int mr = kr.mr, nr = kr.nr;
  thread_local PackBuffers buffers;
  const int64_t mc_max = (std::min(m, kMc) + mr - 1) / mr * mr;
  const int64_t nc_max = (std::min(n, kNc) + nr - 1) / nr * nr;
  const int64_t kc_max = std::min(k, kKc);
  if (static_cast<int64_t>(buffers.a.size()) < mc_max * kc_max) buffers.a.resize(mc_max * kc_max);
  if (static_cast<int64_t>(buffers.b.size()) < nc_max * kc_max) buffers.b.resize(nc_max * kc_max);
  float* pa = buffers.a.data();
  float* pb = buffers.b.data();
  // B with contiguous rows is read in place, except for a last partial panel: the micro-kernel
  // reads the same values in the same order, so only the speed differs. Row strides of a
  // multiple of 1 KiB would map a panel's rows onto a few L1 sets; those are packed.
  const bool direct_b = b.col_stride == 1 && b.row_stride % 256 != 0;
  // Likewise A with contiguous rows when the kernel can read it in place: packing pays only when
  // a block of A serves many panels of B.
  const bool direct_a = prepacked_a == nullptr && kr.direct_a != nullptr && a.col_stride == 1 &&
                        std::min(n, kNc) <= kDirectAMaxN;
  alignas(64) float tile[8 * 32];
  for (int64_t jc = 0; jc < n; jc += kNc) {
    const int64_t nc = std::min(kNc, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKc) {
      const int64_t kc = std::min(kKc, k - pc);
      const bool load = accumulate || pc > 0;
      const int64_t full_nc = direct_b ? nc / nr * nr : 0;
      if (!direct_b) {
        PackB(kr, nc, kc, b, pc, jc, pb);
      } else if (full_nc < nc) {
        PackB(kr, nc - full_nc, kc, b, pc, jc + full_nc, pb + full_nc * kc);
      }
      for (int64_t ic = 0; ic < m; ic += kMc) {
        const int64_t mc = std::min(kMc, m - ic);
        const int64_t full_mc = direct_a ? mc / mr * mr : 0;
        if (prepacked_a != nullptr) {
          const int64_t m_pad = (m + mr - 1) / mr * mr;
          pa = const_cast<float*>(prepacked_a) + pc * m_pad + ic * kc;
        } else if (!direct_a) {
          PackA(kr, mc, kc, a, ic, pc, pa);
        } else if (full_mc < mc) {
          PackA(kr, mc - full_mc, kc, a, ic + full_mc, pc, pa + full_mc * kc);
        }
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          const bool in_place = jr < full_nc;
          const float* bp = in_place ? b.data + pc * b.row_stride + jc + jr : pb + jr * kc;
          const int64_t ldb = in_place ? b.row_stride : nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int rows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
            const bool a_in_place = ir < full_mc;
            const float* ap = a_in_place ? a.data + (ic + ir) * a.row_stride + pc : pa + ir * kc;
            auto micro = [&](float* cc, int64_t ldcc, bool ld) {
              if (a_in_place) {
                kr.direct_a(kc, ap, a.row_stride, bp, ldb, cc, ldcc, ld);
              } else {
                kr.fn(kc, ap, bp, ldb, cc, ldcc, ld);
              }
            };
            float* cp = c + (ic + ir) * ldc + jc + jr;
            if (rows == mr && cols == nr) {
              micro(cp, ldc, load);
              continue;
            }
            // An edge tile: through a full-size tile (the padding lanes are discarded).
            for (int r = 0; r < mr; ++r) {
              for (int j = 0; j < nr; ++j) {
                tile[r * nr + j] = load && r < rows && j < cols ? cp[r * ldc + j] : 0.0f;
              }
            }
            micro(tile, nr, true);
            for (int r = 0; r < rows; ++r) {
              std::memcpy(cp + r * ldc, tile + r * nr, sizeof(float) * cols);
            }
          }
        }
      }
    }
  }
}

}  // namespace

void PackedMatrix::Pack(int64_t m, int64_t k, MatrixView a) {
  const Kernel& kr = BestKernel();
  m_ = m;
  k_ = k;
  const int64_t m_pad = (m + kr.mr - 1) / kr.mr * kr.mr;
  if (static_cast<int64_t>(data_.size()) < m_pad * k) data_.resize(m_pad * k);
  for (int64_t pc = 0; pc < k; pc += kKc) {
    const int64_t kc = std::min(kKc, k - pc);
    for (int64_t ic = 0; ic < m; ic += kMc) {
      PackA(kr, std::min(kMc, m - ic), kc, a, ic, pc, data_.data() + pc * m_pad + ic * kc);
    }
  }
}

void GemmPacked(const PackedMatrix& a, int64_t n, MatrixView b, float* c, int64_t ldc,
                bool accumulate) {
  GemmImpl(BestKernel(), a.rows(), n, a.depth(), MatrixView{nullptr, 0, 0}, b, c, ldc, accumulate,
           a.data());
}

void Gemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c, int64_t ldc,
          bool accumulate) {
  GemmImpl(BestKernel(), m, n, k, a, b, c, ldc, accumulate);
}

bool GemmPackedGather8InPlace(const PackedMatrix& a, int64_t n) {
  return BestKernel().fn == MicroAvx512 && a.rows() % 8 == 0 && n % 32 == 0;
}

void GemmPackedGather8(const PackedMatrix& a, int64_t n, const float* b, const int32_t* rows,
                       const int32_t* chunks, float* c, int64_t ldc) {
  const int64_t m = a.rows(), k = a.depth();
  if (m <= 0 || n <= 0) return;
  if (k > 0 && GemmPackedGather8InPlace(a, n)) {
    // The packed A's k blocks in order (PackedMatrix::Pack: block pc at pc·m, row tile i at
    // i·kc within it); the first overwrites C, the others reload the exact partial sums.
    for (int64_t pc = 0; pc < k; pc += kKc) {
      const int64_t kc = std::min(kKc, k - pc);
      const float* block = a.data() + pc * m;
      for (int64_t j = 0; j < n; j += 32) {
        for (int64_t i = 0; i < m; i += 8) {
          MicroAvx512GatherB(kc, block + i * kc, b, rows + pc, chunks + j / 8, c + i * ldc + j, ldc,
                             pc > 0);
        }
      }
    }
    return;
  }
  // Otherwise B gathered into contiguous rows, then GemmPacked (the same chains).
  thread_local std::vector<float> gathered;
  if (static_cast<int64_t>(gathered.size()) < k * n) gathered.resize(k * n);
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) gathered[p * n + j] = b[chunks[j / 8] + rows[p] + j % 8];
  }
  GemmPacked(a, n, MatrixView{gathered.data(), n, 1}, c, ldc, false);
}

bool GemmRowRunsInPlace(int64_t m, int64_t n) {
  return BestKernel().fn == MicroAvx512 && m % 8 == 0 && n % 32 == 0;
}

void GemmRowRuns(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                 int64_t ldb, int64_t run, int64_t run_stride, float* c, int64_t ldc,
                 bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k > 0 && GemmRowRunsInPlace(m, n)) {
    // Whole 8×32 tiles, each one chain over all of k (no k blocks: the operands of the
    // convolution's weight gradient are a few KiB). A column panel of B serves every row tile.
    const int64_t run_skip = run_stride - run * ldb;
    for (int64_t j = 0; j < n; j += 32) {
      for (int64_t i = 0; i < m; i += 8) {
        MicroAvx512DirectARunsB(k, a + i * lda, lda, b + j, ldb, run, run_skip, c + i * ldc + j,
                                ldc, accumulate);
      }
    }
    return;
  }
  // Any other kernel or shape: B gathered into contiguous rows, then the plain GEMM (the same
  // chains, so the same bits).
  thread_local std::vector<float> rows;
  if (static_cast<int64_t>(rows.size()) < k * n) rows.resize(k * n);
  for (int64_t p = 0; p < k; ++p) {
    const float* src = b + (p / run) * run_stride + (p % run) * ldb;
    std::copy(src, src + n, rows.data() + p * n);
  }
  Gemm(m, n, k, MatrixView{a, lda, 1}, MatrixView{rows.data(), n, 1}, c, ldc, accumulate);
}

void ParallelGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c,
                  int64_t ldc, bool accumulate) {
  const Kernel& kr = BestKernel();
  // Every element's chain is the same however C is split: split the longer side into blocks of
  // whole micro-tiles, enough of them to balance a few threads.
  if (m >= n) {
    const int64_t block = std::max<int64_t>(kr.mr, (m / 8 + kr.mr - 1) / kr.mr * kr.mr);
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int64_t>(0, (m + block - 1) / block),
        [&](const oneapi::tbb::blocked_range<int64_t>& r) {
          for (int64_t t = r.begin(); t < r.end(); ++t) {
            const int64_t i0 = t * block;
            const MatrixView at{a.data + i0 * a.row_stride, a.row_stride, a.col_stride};
            GemmImpl(kr, std::min(block, m - i0), n, k, at, b, c + i0 * ldc, ldc, accumulate);
          }
        },
        oneapi::tbb::simple_partitioner());
  } else {
    const int64_t block = std::max<int64_t>(kr.nr, (n / 8 + kr.nr - 1) / kr.nr * kr.nr);
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int64_t>(0, (n + block - 1) / block),
        [&](const oneapi::tbb::blocked_range<int64_t>& r) {
          for (int64_t t = r.begin(); t < r.end(); ++t) {
            const int64_t j0 = t * block;
            const MatrixView bt{b.data + j0 * b.col_stride, b.row_stride, b.col_stride};
            GemmImpl(kr, m, std::min(block, n - j0), k, a, bt, c + j0, ldc, accumulate);
          }
        },
        oneapi::tbb::simple_partitioner());
  }
}

namespace {

// B [k×n] with contiguous rows: B itself when its columns are adjacent, else a copy in this
// thread's buffer. Returns the data and its row stride.
template <typename T>
std::pair<const T*, int64_t> ContiguousRows(int64_t k, int64_t n, const BasicMatrixView<T>& b) {
  if (b.col_stride == 1) return {b.data, b.row_stride};
  thread_local std::vector<T> rows;
  if (static_cast<int64_t>(rows.size()) < k * n) rows.resize(k * n);
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) rows[p * n + j] = b.data[p * b.row_stride + j * b.col_stride];
  }
  return {rows.data(), n};
}

}  // namespace

namespace {

// The double GEMM's blocks: a C row segment of kDoubleNc stays in L1, a B block of
// kDoubleKc × kDoubleNc (256 KiB) in L2.
constexpr int64_t kDoubleKc = 128;
constexpr int64_t kDoubleNc = 256;

// A 4×8 tile of C (row stride ldc) += A[4×kc]·B[kc×8] in eight AVX registers: per element
// c = c + a·b in increasing p, a multiply and an add (never an fma), so the same bits as the
// scalar loop below. Only speed depends on the CPU.
__attribute__((target("avx2"), optimize("fp-contract=off"))) void DoubleTileAvx2(
    int64_t kc, const double* a, int64_t a_rs, int64_t a_cs, const double* b, int64_t b_rs,
    double* c, int64_t ldc) {
  __m256d c0a = _mm256_loadu_pd(c), c0b = _mm256_loadu_pd(c + 4);
  __m256d c1a = _mm256_loadu_pd(c + ldc), c1b = _mm256_loadu_pd(c + ldc + 4);
  __m256d c2a = _mm256_loadu_pd(c + 2 * ldc), c2b = _mm256_loadu_pd(c + 2 * ldc + 4);
  __m256d c3a = _mm256_loadu_pd(c + 3 * ldc), c3b = _mm256_loadu_pd(c + 3 * ldc + 4);
  for (int64_t p = 0; p < kc; ++p) {
    const __m256d ba = _mm256_loadu_pd(b + p * b_rs);
    const __m256d bb = _mm256_loadu_pd(b + p * b_rs + 4);
    const double* ap = a + p * a_cs;
    __m256d v = _mm256_set1_pd(ap[0]);
    c0a = _mm256_add_pd(c0a, _mm256_mul_pd(v, ba));
    c0b = _mm256_add_pd(c0b, _mm256_mul_pd(v, bb));
    v = _mm256_set1_pd(ap[a_rs]);
    c1a = _mm256_add_pd(c1a, _mm256_mul_pd(v, ba));
    c1b = _mm256_add_pd(c1b, _mm256_mul_pd(v, bb));
    v = _mm256_set1_pd(ap[2 * a_rs]);
    c2a = _mm256_add_pd(c2a, _mm256_mul_pd(v, ba));
    c2b = _mm256_add_pd(c2b, _mm256_mul_pd(v, bb));
    v = _mm256_set1_pd(ap[3 * a_rs]);
    c3a = _mm256_add_pd(c3a, _mm256_mul_pd(v, ba));
    c3b = _mm256_add_pd(c3b, _mm256_mul_pd(v, bb));
  }
  _mm256_storeu_pd(c, c0a);
  _mm256_storeu_pd(c + 4, c0b);
  _mm256_storeu_pd(c + ldc, c1a);
  _mm256_storeu_pd(c + ldc + 4, c1b);
  _mm256_storeu_pd(c + 2 * ldc, c2a);
  _mm256_storeu_pd(c + 2 * ldc + 4, c2b);
  _mm256_storeu_pd(c + 3 * ldc, c3a);
  _mm256_storeu_pd(c + 3 * ldc + 4, c3b);
}

bool HasAvx2() {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return avx2;
}

// C[m×n] += A·B over p in [p0, p1) for B with contiguous rows (row stride b_rs). Every C
// element gets its products added in increasing p, one rounding per product and per sum:
// contraction into fma is off so that every build (also -march=native) gives the same bits.
// With AVX2, 4×8 tiles run in registers (DoubleTileAvx2); the rest, four rows at a time
// sharing each load of B.
__attribute__((optimize("fp-contract=off"))) void DoubleBlock(int64_t m, int64_t n, int64_t p0,
                                                              int64_t p1, DoubleMatrixView a,
                                                              const double* b, int64_t b_rs,
                                                              double* c, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    double* c0 = c + i * ldc;
    double* c1 = c0 + ldc;
    double* c2 = c1 + ldc;
    double* c3 = c2 + ldc;
    int64_t j0 = 0;
    if (HasAvx2()) {
      for (; j0 + 8 <= n; j0 += 8) {
        DoubleTileAvx2(p1 - p0, a.data + i * a.row_stride + p0 * a.col_stride, a.row_stride,
                       a.col_stride, b + p0 * b_rs + j0, b_rs, c0 + j0, ldc);
      }
    }
    for (int64_t p = p0; p < p1; ++p) {
      const double* a0 = a.data + i * a.row_stride + p * a.col_stride;
      const double v0 = a0[0], v1 = a0[a.row_stride], v2 = a0[2 * a.row_stride],
                   v3 = a0[3 * a.row_stride];
      const double* bp = b + p * b_rs;
      for (int64_t j = j0; j < n; ++j) {
        const double bj = bp[j];
        c0[j] = c0[j] + v0 * bj;
        c1[j] = c1[j] + v1 * bj;
        c2[j] = c2[j] + v2 * bj;
        c3[j] = c3[j] + v3 * bj;
      }
    }
  }
  for (; i < m; ++i) {
    double* ci = c + i * ldc;
    for (int64_t p = p0; p < p1; ++p) {
      const double v = a.data[i * a.row_stride + p * a.col_stride];
      const double* bp = b + p * b_rs;
      for (int64_t j = 0; j < n; ++j) ci[j] = ci[j] + v * bp[j];
    }
  }
}

void DoubleGemm(int64_t m, int64_t n, int64_t k, DoubleMatrixView a, DoubleMatrixView b, double* c,
                int64_t ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (!accumulate) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0);
  }
  // B with contiguous rows, so the inner loop runs over j.
  const auto [bp, b_rs] = k > 0 ? ContiguousRows(k, n, b) : std::pair{b.data, b.row_stride};
  for (int64_t j0 = 0; j0 < n; j0 += kDoubleNc) {
    const int64_t nc = std::min(kDoubleNc, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kDoubleKc) {
      DoubleBlock(m, nc, p0, std::min(k, p0 + kDoubleKc), a, bp + j0, b_rs, c + j0, ldc);
    }
  }
}

}  // namespace

void Gemm(int64_t m, int64_t n, int64_t k, DoubleMatrixView a, DoubleMatrixView b, double* c,
          int64_t ldc, bool accumulate) {
  DoubleGemm(m, n, k, a, b, c, ldc, accumulate);
}

void ParallelGemm(int64_t m, int64_t n, int64_t k, DoubleMatrixView a, DoubleMatrixView b,
                  double* c, int64_t ldc, bool accumulate) {
  // As the float ParallelGemm: the longer side in blocks; each element's chain is unchanged.
  if (m >= n) {
    const int64_t block = std::max<int64_t>(4, (m / 8 + 3) / 4 * 4);
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int64_t>(0, (m + block - 1) / block),
        [&](const oneapi::tbb::blocked_range<int64_t>& r) {
          for (int64_t t = r.begin(); t < r.end(); ++t) {
            const int64_t i0 = t * block;
            const DoubleMatrixView at{a.data + i0 * a.row_stride, a.row_stride, a.col_stride};
            DoubleGemm(std::min(block, m - i0), n, k, at, b, c + i0 * ldc, ldc, accumulate);
          }
        },
        oneapi::tbb::simple_partitioner());
  } else {
    const int64_t block = std::max<int64_t>(16, (n / 8 + 15) / 16 * 16);
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<int64_t>(0, (n + block - 1) / block),
        [&](const oneapi::tbb::blocked_range<int64_t>& r) {
          for (int64_t t = r.begin(); t < r.end(); ++t) {
            const int64_t j0 = t * block;
            const DoubleMatrixView bt{b.data + j0 * b.col_stride, b.row_stride, b.col_stride};
            DoubleGemm(m, std::min(block, n - j0), k, a, bt, c + j0, ldc, accumulate);
          }
        },
        oneapi::tbb::simple_partitioner());
  }
}

const char* GemmKernelName() { return BestKernel().name; }

bool GemmWithKernel(const char* kernel, int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b,
                    float* c, int64_t ldc, bool accumulate) {
  for (const Kernel* kr : {&kAvx512, &kAvx2, &kPortable}) {
    if (std::strcmp(kernel, kr->name) == 0) {
      if (!Supported(*kr)) return false;
      GemmImpl(*kr, m, n, k, a, b, c, ldc, accumulate);
      return true;
    }
  }
  return false;
}

}  // namespace bitsweep::trainer
