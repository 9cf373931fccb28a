#include "worker/trainer/ops/conv.h"

#include <algorithm>
#include <cstring>

#include "worker/trainer/tensor.h"

namespace bitsweep::trainer {
namespace {

// col row r = (c, ki, kj) holds, for every example and output position, in[n][c][oy+ki][ox+kj]:
// each output row is a contiguous run of the input row (Caffe's im2col layout).
void Im2Col(const ConvShape& s, int n, const float* in, float* col) {
  const int oh = s.oh(), ow = s.ow();
  const int64_t np = n * s.p();
  for (int c = 0; c < s.c; ++c) {
    for (int ki = 0; ki < s.k; ++ki) {
      for (int kj = 0; kj < s.k; ++kj) {
        float* row = col + ((int64_t{c} * s.k + ki) * s.k + kj) * np;
        for (int e = 0; e < n; ++e) {
          const float* plane = in + e * s.in_size() + int64_t{c} * s.h * s.w;
          float* dst = row + e * s.p();
          for (int oy = 0; oy < oh; ++oy) {
            std::memcpy(dst + int64_t{oy} * ow, plane + int64_t{oy + ki} * s.w + kj,
                        sizeof(float) * ow);
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: din += scatter(dcol). din must be zeroed by the caller.
void Col2Im(const ConvShape& s, int n, const float* dcol, float* din) {
  const int oh = s.oh(), ow = s.ow();
  const int64_t np = n * s.p();
  for (int c = 0; c < s.c; ++c) {
    for (int ki = 0; ki < s.k; ++ki) {
      for (int kj = 0; kj < s.k; ++kj) {
        const float* row = dcol + ((int64_t{c} * s.k + ki) * s.k + kj) * np;
        for (int e = 0; e < n; ++e) {
          float* plane = din + e * s.in_size() + int64_t{c} * s.h * s.w;
          const float* src = row + e * s.p();
          for (int oy = 0; oy < oh; ++oy) {
            float* d = plane + int64_t{oy + ki} * s.w + kj;
            const float* r = src + int64_t{oy} * ow;
            for (int ox = 0; ox < ow; ++ox) d[ox] += r[ox];
          }
        }
      }
    }
  }
}

}  // namespace

int ConvChunk(const ConvShape& s) {
  constexpr int64_t kColBudget = 128 * 1024;  // floats
  return static_cast<int>(std::clamp<int64_t>(kColBudget / (s.ckk() * s.p()), 1, 1 << 16));
}

void ConvForward(const ConvShape& s, int n, const float* in, const float* weights,
                 const float* bias, float* col, float* tmp, float* out) {
  const int chunk = ConvChunk(s);
  ConstMatrixMap w(weights, s.f, s.ckk());
  for (int e0 = 0; e0 < n; e0 += chunk) {
    const int m = std::min(chunk, n - e0);
    const int64_t mp = m * s.p();
    Im2Col(s, m, in + e0 * s.in_size(), col);
    ConstMatrixMap c(col, s.ckk(), mp);
    MatrixMap t(tmp, s.f, mp);
    t.noalias() = w * c;
    // [F, M, P] -> [M, F, P], adding the bias.
    for (int e = 0; e < m; ++e) {
      for (int f = 0; f < s.f; ++f) {
        const float* src = tmp + int64_t{f} * mp + e * s.p();
        float* dst = out + (e0 + e) * s.out_size() + f * s.p();
        const float b = bias[f];
        for (int64_t i = 0; i < s.p(); ++i) dst[i] = src[i] + b;
      }
    }
  }
}

void ConvBackward(const ConvShape& s, int n, const float* dout, const float* in,
                  const float* weights, float* col, float* tmp, float* dcol, float* dweights,
                  float* dbias, float* din) {
  const int chunk = ConvChunk(s);
  ConstMatrixMap w(weights, s.f, s.ckk());
  MatrixMap dw(dweights, s.f, s.ckk());
  VectorMap db(dbias, s.f);
  dw.setZero();
  db.setZero();
  for (int e0 = 0; e0 < n; e0 += chunk) {
    const int m = std::min(chunk, n - e0);
    const int64_t mp = m * s.p();
    // [M, F, P] -> [F, M, P].
    for (int e = 0; e < m; ++e) {
      for (int f = 0; f < s.f; ++f) {
        std::memcpy(tmp + int64_t{f} * mp + e * s.p(), dout + (e0 + e) * s.out_size() + f * s.p(),
                    sizeof(float) * s.p());
      }
    }
    Im2Col(s, m, in + e0 * s.in_size(), col);
    ConstMatrixMap t(tmp, s.f, mp);
    ConstMatrixMap c(col, s.ckk(), mp);
    dw.noalias() += t * c.transpose();
    db += t.rowwise().sum();
    if (din != nullptr) {
      MatrixMap dc(dcol, s.ckk(), mp);
      dc.noalias() = w.transpose() * t;
      float* din_chunk = din + e0 * s.in_size();
      std::fill(din_chunk, din_chunk + m * s.in_size(), 0.0f);
      Col2Im(s, m, dcol, din_chunk);
    }
  }
}

}  // namespace bitsweep::trainer
