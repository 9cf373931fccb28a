// The bits per value of a number format spec string (DESIGN §4), for ordering a precision axis.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace bitsweep::analysis {

// "fp32" -> 32, "fp64" -> 64, "fp16" -> 16, "bf16" -> 16, "tf32" -> 19, "fp8e5m2" / "fp8e4m3"
// -> 8, "float:E,M" -> 1 + E + M, "mask:B" -> B, "fixed:WL,FL" -> WL, "int:B" -> B,
// "dynfixed:WL" -> WL, "dps:IL,FL" -> IL + FL (IL includes the sign bit, seed 002).
// Errors: InvalidArgument naming the spec when it is not a format or its numbers are bad.
absl::StatusOr<int> ParseBitWidth(const std::string& format);

// Whether `format` computes exactly as float32 does ("fp32", "mask:32", "float:8,23"): the
// baseline of a precision axis.
bool IsFloat32Baseline(const std::string& format);

}  // namespace bitsweep::analysis
