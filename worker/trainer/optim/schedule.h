// Learning-rate schedules (DESIGN §5), as functions of the 0-based iteration t of an update:
//   const   lr
//   step    lr·γ^floor(t / step_size)        (Caffe's "step" policy)
//   inv     lr·(1 + γ·t)^-p                   (seeds/002_a5ea6972c7539976.txt §4: γ=1e-4, p=.75)
//   cosine  lr·½·(1 + cos(π·t / T))           (Loshchilov & Hutter 2017, no restarts),
//           T = the trial's total iterations
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {

enum class LrScheduleKind { kConst, kStep, kInv, kCosine };

// "" means const (proto3's unset string). Errors: InvalidArgument "'<name>': unknown ...".
absl::StatusOr<LrScheduleKind> ParseLrSchedule(absl::string_view name);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConst;
  double lr = 0.01;
  double gamma = 0.1;
  double power = 0.75;
  int64_t step_size = 1;
  int64_t total_iterations = 1;

  // The learning rate of the update at 0-based iteration t.
  double At(int64_t t) const;
};

}  // namespace bitsweep::trainer
