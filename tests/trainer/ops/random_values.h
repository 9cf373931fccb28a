// Test support for the ops tests: reproducible operands and bitwise comparison.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {

// n values uniform in [-scale, scale), the same for the same key.
inline std::vector<float> RandomValues(int64_t n, uint64_t key, double scale = 1.0) {
  CounterRng rng(key);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(scale * (2 * rng.Uniform() - 1));
  return v;
}

inline bool SameBits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

}  // namespace bitsweep::trainer
