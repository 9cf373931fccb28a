// Max-pooling's winners and gradients, bit for bit, against the scalar definition (first
// maximum on ties, NaN never wins), for sizes that take each code path: the 2x2 vector path
// with full and partial 16-window chunks, odd sizes and wider windows; alone and fused with
// a ReLU's backward.
#include "worker/trainer/ops/pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "worker/trainer/ops/activation.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

TEST(MaxPoolTest, WinnersAndGradientsAreTheScalarDefinitionsBits) {
  const PoolShape kShapes[] = {
      {32, 24, 24, 2}, {32, 8, 8, 2}, {3, 70, 38, 2}, {2, 9, 11, 2}, {2, 10, 12, 3}};
  for (const PoolShape& s : kShapes) {
    SCOPED_TRACE(testing::Message() << s.c << "x" << s.h << "x" << s.w << " p" << s.p);
    const int n = 2;
    CounterRng rng(s.h * 100 + s.w);
    std::vector<float> in(n * s.in_size()), dout(n * s.out_size());
    // Few distinct values, so windows tie often; some NaN, -0 and +0.
    for (float& x : in) {
      const double u = rng.Uniform();
      x = u < 0.02   ? std::numeric_limits<float>::quiet_NaN()
          : u < 0.1  ? -0.0f
          : u < 0.15 ? 0.0f
                     : static_cast<float>(std::floor(8 * rng.Uniform()) - 4);
    }
    for (float& x : dout) x = rng.Uniform() < 0.1 ? -0.0f : static_cast<float>(rng.Uniform() - 0.5);
    std::vector<float> out(dout.size()), din(in.size());
    std::vector<int32_t> argmax(dout.size());
    MaxPoolForward(s, n, in.data(), out.data(), argmax.data());
    MaxPoolBackward(s, n, dout.data(), argmax.data(), din.data());

    std::vector<float> want_out(out.size()), want_din(in.size(), 0.0f);
    std::vector<int32_t> want_arg(argmax.size());
    for (int e = 0; e < n; ++e) {
      for (int c = 0; c < s.c; ++c) {
        for (int oy = 0; oy < s.oh(); ++oy) {
          for (int ox = 0; ox < s.ow(); ++ox) {
            int32_t best = (c * s.h + oy * s.p) * s.w + ox * s.p;
            for (int dy = 0; dy < s.p; ++dy) {
              for (int dx = 0; dx < s.p; ++dx) {
                const int32_t i = (c * s.h + oy * s.p + dy) * s.w + ox * s.p + dx;
                if (in[e * s.in_size() + i] > in[e * s.in_size() + best]) best = i;
              }
            }
            const int64_t o = e * s.out_size() + (int64_t{c} * s.oh() + oy) * s.ow() + ox;
            want_out[o] = in[e * s.in_size() + best];
            want_arg[o] = best;
            want_din[e * s.in_size() + best] += dout[o];
          }
        }
      }
    }
    EXPECT_EQ(std::memcmp(out.data(), want_out.data(), out.size() * sizeof(float)), 0);
    EXPECT_EQ(argmax, want_arg);
    EXPECT_EQ(std::memcmp(din.data(), want_din.data(), din.size() * sizeof(float)), 0);

    // Fused with a ReLU's backward on the pooling's input: the same bits as the two passes.
    std::vector<float> fused(in.size(), 1.0f);
    MaxPoolReluBackward(s, n, dout.data(), argmax.data(), out.data(), fused.data());
    ActivationBackward(Activation::kRelu, in.data(), want_din.data(),
                       static_cast<int64_t>(want_din.size()));
    EXPECT_EQ(std::memcmp(fused.data(), want_din.data(), fused.size() * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace bitsweep::trainer
