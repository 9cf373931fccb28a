#include "worker/trainer/data/synthetic.h"

#include <algorithm>
#include <array>
#include <vector>

#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr int kPixels = kSyntheticSide * kSyntheticSide;
// Fixed keys: the data set never depends on a trial's seed.
constexpr uint64_t kPrototypeKey = 0x5359'4E54'4845'5449ULL;  // "SYNTHETI"
constexpr uint64_t kTrainKey = 1;
constexpr uint64_t kTestKey = 2;

void Generate(const std::vector<std::array<float, kPixels>>& prototypes, int64_t count,
              uint64_t key, std::vector<float>* images, std::vector<uint8_t>* labels) {
  CounterRng rng(DeriveKey(kPrototypeKey, key));
  images->assign(count * kPixels, 0.0f);
  labels->resize(count);
  for (int64_t e = 0; e < count; ++e) {
    const int label = static_cast<int>(e % kSyntheticClasses);
    (*labels)[e] = static_cast<uint8_t>(label);
    const double contrast = 0.5 + 0.5 * rng.Uniform();
    const int dy = static_cast<int>(rng.Below(3)) - 1;
    const int dx = static_cast<int>(rng.Below(3)) - 1;
    float* img = images->data() + e * kPixels;
    for (int y = 0; y < kSyntheticSide; ++y) {
      for (int x = 0; x < kSyntheticSide; ++x) {
        const int sy = y - dy, sx = x - dx;
        const bool inside = sy >= 0 && sy < kSyntheticSide && sx >= 0 && sx < kSyntheticSide;
        const double base = inside ? prototypes[label][sy * kSyntheticSide + sx] : 0.0;
        const double v = contrast * base + 0.35 * rng.Normal();
        img[y * kSyntheticSide + x] = static_cast<float>(std::clamp(v, 0.0, 1.0));
      }
    }
  }
}

}  // namespace

Dataset MakeSyntheticDataset() {
  CounterRng rng(kPrototypeKey);
  std::vector<std::array<float, kPixels>> prototypes(kSyntheticClasses);
  for (auto& p : prototypes) {
    // Blocky 4×4-cell patterns: spatial structure for conv layers to pick up.
    std::array<float, 16> cells;
    for (float& c : cells) c = rng.Uniform() < 0.4 ? 1.0f : 0.0f;
    for (int i = 0; i < kPixels; ++i) {
      const int y = i / kSyntheticSide, x = i % kSyntheticSide;
      p[i] = cells[(y / 4) * 4 + x / 4];
    }
  }
  Dataset d;
  d.name = "synthetic";
  d.channels = 1;
  d.height = kSyntheticSide;
  d.width = kSyntheticSide;
  d.num_classes = kSyntheticClasses;
  Generate(prototypes, kSyntheticTrain, kTrainKey, &d.train_images, &d.train_labels);
  Generate(prototypes, kSyntheticTest, kTestKey, &d.test_images, &d.test_labels);
  return d;
}

}  // namespace bitsweep::trainer
