#include "worker/trainer/init.h"

#include <charconv>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr char kSupported[] = "supported: he, glorot, normal:STD, uniform:A, constant:C";

}  // namespace

absl::StatusOr<InitSpec> ParseInit(absl::string_view spec) {
  InitSpec out;
  if (spec == "he") return out;
  if (spec == "glorot") {
    out.kind = InitSpec::Kind::kGlorot;
    return out;
  }
  const size_t colon = spec.find(':');
  const absl::string_view name = spec.substr(0, colon);
  if (name == "normal") {
    out.kind = InitSpec::Kind::kNormal;
  } else if (name == "uniform") {
    out.kind = InitSpec::Kind::kUniform;
  } else if (name == "constant") {
    out.kind = InitSpec::Kind::kConstant;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", spec, "': unknown initialisation; ", kSupported));
  }
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", spec, "': expected ", name, ":<number>"));
  }
  const std::string number(spec.substr(colon + 1));
  double value = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || ptr != number.data() + number.size() ||
      !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", spec, "': '", number, "' is not a finite number"));
  }
  if (out.kind != InitSpec::Kind::kConstant && value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", spec, "': must not be negative"));
  }
  out.value = value;
  return out;
}

void InitWeights(const InitSpec& spec, double scale, int64_t fan_in, int64_t fan_out, uint64_t key,
                 float* w, int64_t n) {
  CounterRng rng(key);
  switch (spec.kind) {
    case InitSpec::Kind::kHe: {
      const double std = std::sqrt(2.0 / static_cast<double>(fan_in));
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(scale * std * rng.Normal());
      break;
    }
    case InitSpec::Kind::kGlorot: {
      const double a = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
      for (int64_t i = 0; i < n; ++i) {
        w[i] = static_cast<float>(scale * a * (2.0 * rng.Uniform() - 1.0));
      }
      break;
    }
    case InitSpec::Kind::kNormal:
      for (int64_t i = 0; i < n; ++i) {
        w[i] = static_cast<float>(scale * spec.value * rng.Normal());
      }
      break;
    case InitSpec::Kind::kUniform:
      for (int64_t i = 0; i < n; ++i) {
        w[i] = static_cast<float>(scale * spec.value * (2.0 * rng.Uniform() - 1.0));
      }
      break;
    case InitSpec::Kind::kConstant:
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(scale * spec.value);
      break;
  }
}

}  // namespace bitsweep::trainer
