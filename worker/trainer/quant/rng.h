// Counter-based random numbers: the value for element i of a stream is a pure function of
// (stream key, i), so stochastic rounding is bitwise reproducible whatever the thread count or
// the order in which elements are visited (DESIGN §4), and across checkpoint/resume.
#pragma once

#include <cstdint>

namespace bitsweep::trainer {

// The splitmix64 output function (Steele, Lea & Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): a strong 64-bit bijective mixer.
constexpr uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Element `index` of the stream `key`: splitmix64's state after index+1 steps is
// key + (index+1)*gamma, so this is exactly the splitmix64 sequence, addressable at random.
constexpr uint64_t CounterRandom(uint64_t key, uint64_t index) {
  return Mix64(key + (index + 1) * 0x9E3779B97F4A7C15ULL);
}

// Derives a stream key from a parent key and one more coordinate (site, layer, iteration, ...).
constexpr uint64_t DeriveKey(uint64_t key, uint64_t coordinate) {
  return Mix64(key ^ Mix64(coordinate + 0x632BE59BD9B4E019ULL));
}

// Uniform double in [0, 1) with 53 random bits.
constexpr double ToUnitDouble(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// A sequential generator over the same stream, for initialisation, shuffling and the
// synthetic data set. Its outputs are defined here (no std::*_distribution, whose results are
// implementation-defined), so they are the same on every platform.
class CounterRng {
 public:
  explicit CounterRng(uint64_t key) : key_(key) {}

  uint64_t Next() { return CounterRandom(key_, counter_++); }
  // Uniform in [0, 1).
  double Uniform() { return ToUnitDouble(Next()); }
  // Standard normal by Box-Muller (both values are used in turn).
  double Normal();
  // Uniform integer in [0, n), n > 0, without modulo bias (rejection).
  uint64_t Below(uint64_t n);

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace bitsweep::trainer
