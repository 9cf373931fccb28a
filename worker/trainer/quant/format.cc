#include "worker/trainer/quant/format.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace bitsweep::trainer {
namespace {

constexpr char kSupportedFormats[] =
    "fp32, float:E,M, fp16, bf16, tf32, fp8e5m2, fp8e4m3, mask:B, fixed:WL,FL, int:B, "
    "dynfixed:WL, dps:IL,FL";

absl::Status Bad(absl::string_view spec, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", spec, "': ", what));
}

// Parses the comma-separated integer arguments after "name:"; `count` of them exactly.
absl::StatusOr<std::vector<int>> ParseArgs(absl::string_view spec, absl::string_view args,
                                           int count, absl::string_view usage) {
  std::vector<absl::string_view> parts = absl::StrSplit(args, ',');
  if (static_cast<int>(parts.size()) != count) {
    return Bad(spec, absl::StrCat("expected ", usage));
  }
  std::vector<int> values;
  for (absl::string_view part : parts) {
    int value = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size()) {
      return Bad(spec, absl::StrCat("'", part, "' is not an integer; expected ", usage));
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<Format> MakeFloat(absl::string_view spec, int e, int m) {
  if (e < 2 || e > 8) return Bad(spec, "E must be between 2 and 8");
  if (m < 0 || m > 23) return Bad(spec, "M must be between 0 and 23");
  Format f;
  f.kind = FormatKind::kFloat;
  f.exponent_bits = e;
  f.mantissa_bits = m;
  return f;
}

}  // namespace

std::string Format::ToString() const {
  switch (kind) {
    case FormatKind::kFp32:
      return "fp32";
    case FormatKind::kFloat:
      return absl::StrCat("float:", exponent_bits, ",", mantissa_bits);
    case FormatKind::kMask:
      return absl::StrCat("mask:", mask_bits);
    case FormatKind::kFixed:
      return absl::StrCat("fixed:", word_bits, ",", frac_bits);
    case FormatKind::kInt:
      return absl::StrCat("int:", word_bits);
    case FormatKind::kDynFixed:
      return absl::StrCat("dynfixed:", word_bits);
    case FormatKind::kDps:
      return absl::StrCat("dps:", int_bits, ",", frac_bits);
  }
  return "?";
}

double Format::MaxFinite() const {
  switch (kind) {
    case FormatKind::kFp32:
      return 3.4028234663852886e38;
    case FormatKind::kFloat: {
      // IEEE-like: the all-ones exponent is reserved, so emax = bias = 2^(E-1) - 1.
      const int emax = (1 << (exponent_bits - 1)) - 1;
      return std::ldexp(2.0 - std::ldexp(1.0, -mantissa_bits), emax);
    }
    case FormatKind::kMask:
      return std::ldexp(2.0 - std::ldexp(1.0, -(mask_bits - 9)), 127);
    case FormatKind::kFixed:
      return std::ldexp(1.0, word_bits - frac_bits - 1) - std::ldexp(1.0, -frac_bits);
    case FormatKind::kDps:
      return std::ldexp(1.0, int_bits - 1) - std::ldexp(1.0, -frac_bits);
    case FormatKind::kInt:
    case FormatKind::kDynFixed:
      return std::numeric_limits<double>::infinity();
  }
  return 0;
}

int Format::Bits() const {
  switch (kind) {
    case FormatKind::kFp32:
      return 32;
    case FormatKind::kFloat:
      return 1 + exponent_bits + mantissa_bits;
    case FormatKind::kMask:
      return mask_bits;
    case FormatKind::kFixed:
    case FormatKind::kInt:
    case FormatKind::kDynFixed:
      return word_bits;
    case FormatKind::kDps:
      return int_bits + frac_bits;
  }
  return 32;
}

absl::StatusOr<Format> ParseFormat(absl::string_view spec) {
  if (spec == "fp32") return Format{};
  if (spec == "fp16") return MakeFloat(spec, 5, 10);
  if (spec == "bf16") return MakeFloat(spec, 8, 7);
  if (spec == "tf32") return MakeFloat(spec, 8, 10);
  if (spec == "fp8e5m2") return MakeFloat(spec, 5, 2);
  if (spec == "fp8e4m3") return MakeFloat(spec, 4, 3);
  const size_t colon = spec.find(':');
  const absl::string_view name = spec.substr(0, colon);
  const absl::string_view args =
      colon == absl::string_view::npos ? absl::string_view() : spec.substr(colon + 1);
  if (name == "float") {
    auto v = ParseArgs(spec, args, 2, "float:E,M");
    if (!v.ok()) return v.status();
    return MakeFloat(spec, (*v)[0], (*v)[1]);
  }
  if (name == "mask") {
    auto v = ParseArgs(spec, args, 1, "mask:B");
    if (!v.ok()) return v.status();
    const int b = (*v)[0];
    // Fewer than 9 bits would cut into the sign and exponent of float32
    // (seeds/000_075f41563a3d4c76.txt sweeps 9..32).
    if (b < 9 || b > 32) return Bad(spec, "B must be between 9 and 32");
    Format f;
    f.kind = FormatKind::kMask;
    f.mask_bits = b;
    return f;
  }
  if (name == "fixed") {
    auto v = ParseArgs(spec, args, 2, "fixed:WL,FL");
    if (!v.ok()) return v.status();
    const int wl = (*v)[0];
    const int fl = (*v)[1];
    if (wl < 2 || wl > 32) return Bad(spec, "WL must be between 2 and 32");
    if (fl < 0 || fl >= wl) {
      return Bad(spec, "FL must be between 0 and WL-1 (at least the sign bit is integer)");
    }
    Format f;
    f.kind = FormatKind::kFixed;
    f.word_bits = wl;
    f.frac_bits = fl;
    return f;
  }
  if (name == "int" || name == "dynfixed") {
    auto v = ParseArgs(spec, args, 1, name == "int" ? "int:B" : "dynfixed:WL");
    if (!v.ok()) return v.status();
    const int b = (*v)[0];
    if (b < 2 || b > 32)
      return Bad(spec,
                 name == "int" ? "B must be between 2 and 32" : "WL must be between 2 and 32");
    Format f;
    f.kind = name == "int" ? FormatKind::kInt : FormatKind::kDynFixed;
    f.word_bits = b;
    return f;
  }
  if (name == "dps") {
    auto v = ParseArgs(spec, args, 2, "dps:IL,FL");
    if (!v.ok()) return v.status();
    const int il = (*v)[0];
    const int fl = (*v)[1];
    if (il < 1 || il > 32) return Bad(spec, "IL must be between 1 and 32 (the sign bit included)");
    // IL + FL <= 53 keeps every step count exact in double (quant/quantizer.h).
    if (fl < 0 || fl > 52) return Bad(spec, "FL must be between 0 and 52");
    if (il + fl > 53) return Bad(spec, "IL + FL must be at most 53");
    Format f;
    f.kind = FormatKind::kDps;
    f.int_bits = il;
    f.frac_bits = fl;
    return f;
  }
  return Bad(spec, absl::StrCat("unknown format; supported: ", kSupportedFormats));
}

absl::StatusOr<Rounding> ParseRounding(absl::string_view spec) {
  if (spec == "truncate") return Rounding::kTruncate;
  if (spec == "nearest") return Rounding::kNearest;
  if (spec == "stochastic") return Rounding::kStochastic;
  return Bad(spec, "unknown rounding; supported: truncate, nearest, stochastic");
}

absl::string_view RoundingName(Rounding rounding) {
  switch (rounding) {
    case Rounding::kTruncate:
      return "truncate";
    case Rounding::kNearest:
      return "nearest";
    case Rounding::kStochastic:
      return "stochastic";
  }
  return "?";
}

}  // namespace bitsweep::trainer
