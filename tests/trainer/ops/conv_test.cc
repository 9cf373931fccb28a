// The convolution's fixed order, bit for bit: every pass against a scalar transcription of the
// order conv.h and gemm.h define, for shapes that take each of conv.cc's code paths (input rows
// up to 16 floats or wider, kernels up to 8 or wider, partial example groups).
#include "worker/trainer/ops/conv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "oneapi/tbb/task_arena.h"
#include "tests/trainer/ops/random_values.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

struct Expected {
  std::vector<float> out, dw, db, din;
};

// The definition, one scalar at a time. col(e, r, p) is im2col's element (row r = (c, ki, kj)).
Expected Reference(const ConvShape& s, int n, const std::vector<float>& in,
                   const std::vector<float>& w, const std::vector<float>& b,
                   const std::vector<float>& dout) {
  auto col = [&](int e, int64_t r, int64_t p) {
    const int64_t c = r / (s.k * s.k), ki = r / s.k % s.k, kj = r % s.k;
    const int64_t oy = p / s.ow(), ox = p % s.ow();
    return in[e * s.in_size() + (c * s.h + oy + ki) * s.w + ox + kj];
  };
  Expected x{std::vector<float>(n * s.out_size()), std::vector<float>(s.weight_size()),
             std::vector<float>(s.f), std::vector<float>(n * s.in_size(), 0.0f)};
  for (int e = 0; e < n; ++e) {
    for (int f = 0; f < s.f; ++f) {
      for (int64_t p = 0; p < s.p(); ++p) {
        float acc = 0.0f;
        for (int64_t r = 0; r < s.ckk(); ++r) acc = std::fma(w[f * s.ckk() + r], col(e, r, p), acc);
        x.out[e * s.out_size() + f * s.p() + p] = acc + b[f];
      }
    }
  }
  const int groups = (n + kConvGroup - 1) / kConvGroup;
  for (int f = 0; f < s.f; ++f) {
    for (int64_t r = 0; r < s.ckk(); ++r) {
      float total = 0.0f;
      for (int g = 0; g < groups; ++g) {
        float acc = 0.0f;
        for (int e = g * kConvGroup; e < std::min(n, (g + 1) * kConvGroup); ++e) {
          for (int64_t p = 0; p < s.p(); ++p) {
            acc = std::fma(dout[e * s.out_size() + f * s.p() + p], col(e, r, p), acc);
          }
        }
        total = g == 0 ? acc : total + acc;
      }
      x.dw[f * s.ckk() + r] = total;
    }
    float total = 0.0f;
    for (int g = 0; g < groups; ++g) {
      float acc = 0.0f;
      for (int e = g * kConvGroup; e < std::min(n, (g + 1) * kConvGroup); ++e) {
        for (int64_t p = 0; p < s.p(); ++p) acc += dout[e * s.out_size() + f * s.p() + p];
      }
      total = g == 0 ? acc : total + acc;
    }
    x.db[f] = total;
  }
  for (int e = 0; e < n; ++e) {
    for (int64_t r = 0; r < s.ckk(); ++r) {  // col2im order: rows, then positions
      const int64_t c = r / (s.k * s.k), ki = r / s.k % s.k, kj = r % s.k;
      for (int64_t p = 0; p < s.p(); ++p) {
        float dcol = 0.0f;
        for (int f = 0; f < s.f; ++f) {
          dcol = std::fma(w[f * s.ckk() + r], dout[e * s.out_size() + f * s.p() + p], dcol);
        }
        const int64_t oy = p / s.ow(), ox = p % s.ow();
        x.din[e * s.in_size() + (c * s.h + oy + ki) * s.w + ox + kj] += dcol;
      }
    }
  }
  return x;
}

TEST(ConvTest, EveryPassGivesTheBitsOfItsDefinedOrderForAnyThreadCount) {
  const struct {
    ConvShape shape;
    int n;
  } kCases[] = {
      {{1, 28, 28, 32, 5}, 3},   // the reference CNN's first layer (rows of 28 floats)
      {{32, 12, 12, 32, 5}, 9},  // its second (rows of 12: the short-row path), two groups
      {{3, 13, 11, 5, 3}, 2},
      {{2, 14, 15, 4, 9}, 1},  // odd sizes; a kernel wider than 8
      // The weight gradient from the channel-last input (F % 8 == 0, K·C % 32 == 0) on odd
      // sizes and partial groups, and a filter count that falls back.
      {{16, 9, 7, 8, 2}, 17},
      {{32, 10, 11, 16, 3}, 3},
      {{32, 12, 12, 12, 5}, 2},
      // The forward pass reading its input in place (rows of 16 positions), and rows of 8
      // with a number of positions that is not a multiple of 32 (im2col).
      {{3, 10, 20, 16, 5}, 2},
      {{2, 7, 12, 8, 5}, 2},
      // The channel-last copy in 8x8 blocks (two channel blocks, ten position blocks), and
      // the input gradient's rows summed four channels at a time with two left over.
      {{16, 8, 10, 8, 2}, 3},
      {{6, 9, 9, 8, 3}, 2},
      // The weight gradient on rows padded to 32 columns, whose first spare column makes the
      // bias gradient, over several groups (CKK 25 and 20).
      {{1, 10, 10, 8, 5}, 17},
      {{5, 6, 6, 8, 2}, 9},
  };
  for (const auto& [s, n] : kCases) {
    SCOPED_TRACE(testing::Message() << "c" << s.c << " h" << s.h << " w" << s.w << " f" << s.f
                                    << " k" << s.k << " n" << n);
    const std::vector<float> in = RandomValues(n * s.in_size(), 1),
                             w = RandomValues(s.weight_size(), 2);
    const std::vector<float> b = RandomValues(s.f, 3), dout = RandomValues(n * s.out_size(), 4);
    const Expected want = Reference(s, n, in, w, b, dout);
    for (int threads : {1, 2, 3}) {
      Expected got{std::vector<float>(want.out.size()), std::vector<float>(want.dw.size()),
                   std::vector<float>(want.db.size()), std::vector<float>(want.din.size())};
      oneapi::tbb::task_arena(threads).execute([&] {
        ConvForward(s, n, in.data(), w.data(), b.data(), got.out.data());
        ConvBackward(s, n, dout.data(), in.data(), w.data(), got.dw.data(), got.db.data(),
                     got.din.data());
      });
      EXPECT_TRUE(SameBits(got.out, want.out)) << threads << " threads";
      EXPECT_TRUE(SameBits(got.dw, want.dw)) << threads << " threads";
      EXPECT_TRUE(SameBits(got.db, want.db)) << threads << " threads";
      EXPECT_TRUE(SameBits(got.din, want.din)) << threads << " threads";
    }
  }
}

// ConvForward with an activation and pooling: the bits of the plain pass followed by
// ActivationForward and MaxPoolForward, for any thread count.
TEST(ConvTest, ForwardWithActivationAndPoolGivesTheBitsOfSeparatePasses) {
  const struct {
    ConvShape shape;
    int pool, n;
  } kCases[] = {
      {{1, 28, 28, 32, 5}, 2, 5},
      {{32, 12, 12, 32, 5}, 2, 3},
      {{3, 13, 11, 5, 3}, 3, 2},
  };
  for (const auto& [s, p, n] : kCases) {
    for (const Activation act : {Activation::kRelu, Activation::kTanh}) {
      SCOPED_TRACE(testing::Message()
                   << "c" << s.c << " h" << s.h << " f" << s.f << " act " << static_cast<int>(act));
      const PoolShape pool{s.f, s.oh(), s.ow(), p};
      const std::vector<float> in = RandomValues(n * s.in_size(), 1),
                               w = RandomValues(s.weight_size(), 2), b = RandomValues(s.f, 3);
      std::vector<float> want(n * s.out_size()), want_pooled(n * pool.out_size());
      std::vector<int32_t> want_argmax(want_pooled.size());
      ConvForward(s, n, in.data(), w.data(), b.data(), want.data());
      ActivationForward(act, want.data(), static_cast<int64_t>(want.size()));
      MaxPoolForward(pool, n, want.data(), want_pooled.data(), want_argmax.data());
      for (int threads : {1, 2}) {
        // keep_out false: the activations stay in a per-thread buffer, the pooled bits are
        // the same.
        for (const bool keep_out : {true, false}) {
          std::vector<float> out(want.size()), pooled(want_pooled.size());
          std::vector<int32_t> argmax(want_argmax.size());
          const PoolOutput po{pool, pooled.data(), argmax.data(), keep_out};
          oneapi::tbb::task_arena(threads).execute([&] {
            ConvForward(s, n, in.data(), w.data(), b.data(), out.data(), &act, nullptr, &po);
          });
          if (keep_out) {
            EXPECT_TRUE(SameBits(out, want)) << threads << " threads";
          }
          EXPECT_TRUE(SameBits(pooled, want_pooled)) << threads << " threads, keep " << keep_out;
          EXPECT_EQ(argmax, want_argmax) << threads << " threads, keep " << keep_out;
        }
      }
    }
  }
}

// ConvBackward given the pooled ReLU's gradient: the bits of MaxPoolReluBackward's dout passed
// to the plain ConvBackward, for any thread count (even and odd conv outputs; 2x2 and 3x3
// windows).
TEST(ConvTest, PooledReluGradientGivesTheBitsOfThePlainPass) {
  const struct {
    ConvShape shape;
    int pool, n;
  } kCases[] = {
      {{1, 28, 28, 32, 5}, 2, 9},
      {{32, 12, 12, 32, 5}, 2, 3},
      {{3, 13, 11, 5, 3}, 3, 2},
  };
  for (const auto& [s, p, n] : kCases) {
    SCOPED_TRACE(testing::Message() << "c" << s.c << " h" << s.h << " f" << s.f << " n" << n);
    const PoolShape pool{s.f, s.oh(), s.ow(), p};
    const std::vector<float> in = RandomValues(n * s.in_size(), 1),
                             w = RandomValues(s.weight_size(), 2);
    // Pooled maxima of a ReLU output: about half of them zero.
    std::vector<float> act = RandomValues(n * s.out_size(), 3);
    for (float& v : act) v = v < 0.0f ? 0.0f : v;
    std::vector<float> pooled(n * pool.out_size());
    std::vector<int32_t> argmax(pooled.size());
    MaxPoolForward(pool, n, act.data(), pooled.data(), argmax.data());
    const std::vector<float> dpooled = RandomValues(pooled.size(), 4);
    std::vector<float> dout(act.size());
    MaxPoolReluBackward(pool, n, dpooled.data(), argmax.data(), pooled.data(), dout.data());
    std::vector<float> want_dw(w.size()), want_db(s.f), want_din(in.size());
    ConvBackward(s, n, dout.data(), in.data(), w.data(), want_dw.data(), want_db.data(),
                 want_din.data());
    for (int threads : {1, 2}) {
      std::vector<float> dw(w.size()), db(s.f), din(in.size());
      oneapi::tbb::task_arena(threads).execute([&] {
        ConvBackward(s, n, PooledReluGradient{pool, dpooled.data(), argmax.data(), pooled.data()},
                     in.data(), w.data(), dw.data(), db.data(), din.data());
      });
      EXPECT_TRUE(SameBits(dw, want_dw)) << threads << " threads";
      EXPECT_TRUE(SameBits(db, want_db)) << threads << " threads";
      EXPECT_TRUE(SameBits(din, want_din)) << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace bitsweep::trainer
