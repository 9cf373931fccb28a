// Number formats and rounding modes as spec strings (DESIGN §4), parsed once into plain values
// the Quantizer works from.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {

enum class FormatKind {
  kFp32,   // no quantisation
  kFloat,  // sign, `exponent_bits` E, `mantissa_bits` M; subnormals kept; saturating
  kMask,   // keep the top `mask_bits` B bits of the float32 word (seeds/000_075f41563a3d4c76.txt)
  kFixed,  // two's complement, `word_bits` WL, `frac_bits` FL; saturating
  kInt,    // symmetric integer of `word_bits` B, one scale per tensor: max|x| / (2^(B-1)-1)
  // The dynamic formats: fixed point whose IL/FL adapt during training (quant/sites.h).
  kDynFixed,  // `word_bits` WL; FL per tensor per site (Courbariaux et al. 2014)
  kDps,       // initial IL `int_bits`, FL `frac_bits`, per site (seeds/002_a5ea6972c7539976.txt)
};

struct Format {
  FormatKind kind = FormatKind::kFp32;
  int exponent_bits = 8;   // kFloat: 2..8
  int mantissa_bits = 23;  // kFloat: 0..23
  int mask_bits = 32;      // kMask: 9..32
  int word_bits = 32;      // kFixed: 2..32
  int frac_bits = 0;       // kFixed: 0..WL-1; kDps: initial FL 0..52
  int int_bits = 0;        // kDps: initial IL (sign included) 1..32

  // Whether IL/FL change during training (kDynFixed, kDps): applied through SiteQuantizer.
  bool dynamic() const { return kind == FormatKind::kDynFixed || kind == FormatKind::kDps; }

  // Canonical spec string, e.g. "float:5,10", "mask:12", "fixed:16,8", "fp32".
  std::string ToString() const;
  // Largest finite magnitude (kFixed: the positive end of the range; kDps: of the initial
  // format; kInt and kDynFixed adapt to the data: infinity).
  double MaxFinite() const;
  // Bits per value: fixed/int/dynfixed WL, dps IL+FL (initial), float 1+E+M, mask B, fp32 32.
  int Bits() const;
};

enum class Rounding {
  kTruncate,    // drop the low bits: toward zero (floats, mask), floor (fixed)
  kNearest,     // to nearest, ties to even
  kStochastic,  // up with probability (x - lower) / step: unbiased
};

// Parses "fp32", "float:E,M", "fp16", "bf16", "tf32", "fp8e5m2", "fp8e4m3", "mask:B",
// "fixed:WL,FL", "int:B" (2..32), "dynfixed:WL" (2..32), "dps:IL,FL" (IL 1..32, FL 0..52).
// fp8e4m3 is IEEE-like (exponent 15 reserved, max 240), not OCP's E4M3 (448).
// Errors: InvalidArgument "'<spec>': <what is wrong>" (unknown format, malformed numbers, out of
// range).
absl::StatusOr<Format> ParseFormat(absl::string_view spec);

// Parses "truncate", "nearest", "stochastic".
// Errors: InvalidArgument "'<spec>': unknown rounding; supported: ...".
absl::StatusOr<Rounding> ParseRounding(absl::string_view spec);

absl::string_view RoundingName(Rounding rounding);

}  // namespace bitsweep::trainer
