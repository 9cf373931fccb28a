// The trainer's matrix product, with one fixed summation order so results are bitwise the same
// on every x86-64 machine, for every vector width and every thread count:
//
//   C[i][j] = fma(A[i][K-1], B[K-1][j], ... fma(A[i][1], B[1][j], fma(A[i][0], B[0][j], c0)))
//
// with c0 = 0, or the incoming C[i][j] when accumulating: one fused multiply-add per product,
// in increasing k, each rounded to float32. Blocking over k reloads the stored float32 partial
// sum, which is exact, so cache blocking does not change the chain; nor does splitting the
// rows or columns of C between threads. The kernels (AVX-512F, AVX2+FMA, or portable std::fma
// when neither is present) are chosen once at run time; they differ only in speed.
//
// Operands are strided views: element (i, k) of A is a[i * a_rs + k * a_cs], element (k, j) of
// B is b[k * b_rs + j * b_cs], element (i, j) of C is c[i * ldc + j]; a transpose is a swap of
// the strides. Packing copies each block into contiguous panels first.
#pragma once

#include <cstdint>
#include <vector>

namespace bitsweep::trainer {

template <typename T>
struct BasicMatrixView {
  const T* data;
  int64_t row_stride;
  int64_t col_stride;
};
using MatrixView = BasicMatrixView<float>;
using DoubleMatrixView = BasicMatrixView<double>;

// C[m×n] = (accumulate ? C : 0) + A[m×k]·B[k×n], in the calling thread. k == 0 leaves C (or
// zeroes it when not accumulating).
void Gemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c, int64_t ldc,
          bool accumulate);

// The same result, with the rows (or columns) of C split between the threads of the current
// oneTBB arena.
void ParallelGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c,
                  int64_t ldc, bool accumulate);

// C[m×n] = (accumulate ? C : 0) + A·B, in the calling thread, for A with contiguous rows (row i
// at a + i·lda) and B whose rows come in runs: row p is at b + (p / run)·run_stride +
// (p % run)·ldb, each with its n values contiguous. The convolution's weight gradient reads its
// input this way in place of a transposed im2col. The same chains, so Gemm's bits.
void GemmRowRuns(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                 int64_t ldb, int64_t run, int64_t run_stride, float* c, int64_t ldc,
                 bool accumulate);
// Whether GemmRowRuns reads B in place for these sizes (else it gathers B first, and a caller
// may prefer another layout): AVX-512, m a multiple of 8 and n of 32.
bool GemmRowRunsInPlace(int64_t m, int64_t n);

// An A operand packed once for many products with it (a layer's weights, used by every example
// of a batch): GemmPacked gives exactly Gemm's result without repacking A on every call.
class PackedMatrix {
 public:
  // Packs A [m×k] (reusing this object's buffer).
  void Pack(int64_t m, int64_t k, MatrixView a);
  int64_t rows() const { return m_; }
  int64_t depth() const { return k_; }
  const float* data() const { return data_.data(); }

 private:
  int64_t m_ = 0, k_ = 0;
  std::vector<float> data_;
};

// C[m×n] = A·B with a packed A and B gathered in 8-column pieces: B[p][j] = b[rows[p] +
// chunks[j / 8] + j % 8] (so n/8 chunk offsets, rounded up). The convolution's forward pass
// reads its input this way in place of an im2col (output rows of a multiple of 8 positions).
// Gemm's chains, so its bits.
void GemmPackedGather8(const PackedMatrix& a, int64_t n, const float* b, const int32_t* rows,
                       const int32_t* chunks, float* c, int64_t ldc);
// Whether GemmPackedGather8 reads B in place (else it gathers B first): AVX-512, A's rows a
// multiple of 8 and n of 32.
bool GemmPackedGather8InPlace(const PackedMatrix& a, int64_t n);

// C[m×n] = (accumulate ? C : 0) + A·B with a packed A, in the calling thread.
void GemmPacked(const PackedMatrix& a, int64_t n, MatrixView b, float* c, int64_t ldc,
                bool accumulate);

// train.compute fp64: the same products in double, one chain per element in increasing k,
//   C[i][j] = (((c0 + A[i][0]·B[0][j]) + A[i][1]·B[1][j]) + ...)
// with every product and every sum rounded to double (no fused multiply-add, in every build:
// plain loops the compiler vectorises over j). Blocking over j and k stores exact double
// partial sums and splitting rows or columns between threads never cuts a chain, so the
// result is the same for every thread count.
void Gemm(int64_t m, int64_t n, int64_t k, DoubleMatrixView a, DoubleMatrixView b, double* c,
          int64_t ldc, bool accumulate);
void ParallelGemm(int64_t m, int64_t n, int64_t k, DoubleMatrixView a, DoubleMatrixView b,
                  double* c, int64_t ldc, bool accumulate);

// Which kernel Gemm uses on this machine: "avx512", "avx2" or "portable".
const char* GemmKernelName();

// Testing: runs Gemm with a given kernel ("avx512", "avx2" or "portable"); returns false (and
// does nothing) when this machine cannot run it.
bool GemmWithKernel(const char* kernel, int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b,
                    float* c, int64_t ldc, bool accumulate);

}  // namespace bitsweep::trainer
