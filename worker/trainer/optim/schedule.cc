#include "worker/trainer/optim/schedule.h"

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<LrScheduleKind> ParseLrSchedule(absl::string_view name) {
  if (name.empty() || name == "const") return LrScheduleKind::kConst;
  if (name == "step") return LrScheduleKind::kStep;
  if (name == "inv") return LrScheduleKind::kInv;
  if (name == "cosine") return LrScheduleKind::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "': unknown schedule; supported: const, step, inv, cosine"));
}

double LrSchedule::At(int64_t t) const {
  const double td = static_cast<double>(t);
  switch (kind) {
    case LrScheduleKind::kConst:
      return lr;
    case LrScheduleKind::kStep:
      return lr * std::pow(gamma, static_cast<double>(t / step_size));
    case LrScheduleKind::kInv:
      return lr * std::pow(1.0 + gamma * td, -power);
    case LrScheduleKind::kCosine:
      return lr * 0.5 *
             (1.0 + std::cos(std::numbers::pi * td / static_cast<double>(total_iterations)));
  }
  return lr;
}

}  // namespace bitsweep::trainer
