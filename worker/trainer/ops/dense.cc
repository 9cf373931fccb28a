#include "worker/trainer/ops/dense.h"

#include "worker/trainer/tensor.h"

namespace bitsweep::trainer {

void DenseForward(int n, int in_dim, int out_dim, const float* in, const float* weights,
                  const float* bias, float* out) {
  ConstMatrixMap x(in, n, in_dim);
  ConstMatrixMap w(weights, out_dim, in_dim);
  MatrixMap y(out, n, out_dim);
  y.noalias() = x * w.transpose();
  y.rowwise() += ConstVectorMap(bias, out_dim).transpose();
}

void DenseBackward(int n, int in_dim, int out_dim, const float* dout, const float* in,
                   const float* weights, float* dweights, float* dbias, float* din) {
  ConstMatrixMap dy(dout, n, out_dim);
  ConstMatrixMap x(in, n, in_dim);
  MatrixMap dw(dweights, out_dim, in_dim);
  dw.noalias() = dy.transpose() * x;
  VectorMap(dbias, out_dim) = dy.colwise().sum().transpose();
  if (din != nullptr) {
    ConstMatrixMap w(weights, out_dim, in_dim);
    MatrixMap dx(din, n, in_dim);
    dx.noalias() = dy * w;
  }
}

}  // namespace bitsweep::trainer
