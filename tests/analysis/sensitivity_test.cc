#include "analysis/sensitivity.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/analysis/trial_fixture.h"

namespace bitsweep::analysis {
namespace {

constexpr char kBatch[] = "train.batch_size";

std::vector<TrialGroup> Grid(double p1b1, double p1b2, double p2b1, double p2b2) {
  return GroupTrials(
      std::vector<v1::Trial>{DoneTrial({{kFormat, "mask:10"}, {kBatch, "32"}}, 0, p1b1),
                             DoneTrial({{kFormat, "mask:10"}, {kBatch, "64"}}, 0, p1b2),
                             DoneTrial({{kFormat, "mask:16"}, {kBatch, "32"}}, 0, p2b1),
                             DoneTrial({{kFormat, "mask:16"}, {kBatch, "64"}}, 0, p2b2)});
}

const SensitivityTerm& Find(const SensitivityReport& r, const std::string& name) {
  for (const SensitivityTerm& t : r.terms) {
    if (t.name == name) return t;
  }
  static const SensitivityTerm kMissing{"missing", {}, -1, 0};
  return kMissing;
}

TEST(SensitivityTest, AdditiveGrid_MainEffectsOnlyRanked) {
  // Grand mean 4, SS_total 20; precision means 2 / 6 -> SS 16; batch means 3 / 5 -> SS 4.
  const SensitivityReport r = Sensitivity(Grid(1, 3, 5, 7), kFormat);
  EXPECT_EQ(r.observations, 4);
  EXPECT_NEAR(r.ss_total, 20, 1e-12);
  ASSERT_EQ(r.terms.size(), 3u);
  EXPECT_EQ(r.terms[0].name, kFormat);
  EXPECT_NEAR(r.terms[0].share, 0.8, 1e-12);
  EXPECT_EQ(r.terms[1].name, kBatch);
  EXPECT_NEAR(r.terms[1].share, 0.2, 1e-12);
  EXPECT_NEAR(Find(r, std::string(kBatch) + " × " + kFormat).share, 0, 1e-12);
}

TEST(SensitivityTest, InteractionWithPrecision_GetsItsShare) {
  // y = 1, 1, 1, 5: mean 2, SS_total 12, each main effect SS 4, cells SS 12 -> interaction 4.
  const SensitivityReport r = Sensitivity(Grid(1, 1, 1, 5), kFormat);
  EXPECT_NEAR(Find(r, kFormat).share, 1.0 / 3, 1e-12);
  EXPECT_NEAR(Find(r, kBatch).share, 1.0 / 3, 1e-12);
  const SensitivityTerm& inter = Find(r, std::string(kBatch) + " × " + kFormat);
  EXPECT_NEAR(inter.share, 1.0 / 3, 1e-12);
  EXPECT_EQ(inter.levels, 4);
}

TEST(SensitivityTest, NoPrecisionAxis_NoInteractions) {
  const SensitivityReport r = Sensitivity(Grid(1, 3, 5, 7), "");
  EXPECT_EQ(r.terms.size(), 2u);
}

}  // namespace
}  // namespace bitsweep::analysis
