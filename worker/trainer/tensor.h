// Eigen views over the trainer's plain float buffers. All tensors are contiguous row-major
// float arrays (std::vector<float>) with their shapes documented where they are declared; these
// maps let the ops hand them to Eigen's GEMM without copies.
#pragma once

#include <Eigen/Core>

namespace bitsweep::trainer {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMajorMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix>;
using VectorMap = Eigen::Map<Eigen::VectorXf>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXf>;
using RowVectorMap = Eigen::Map<Eigen::RowVectorXf>;

}  // namespace bitsweep::trainer
