// `bitsweep quantize`: rounds numbers onto a format's grid with the trainer's own quantiser
// (worker/trainer/quant/) and shows the result and its bit pattern. Needs no server.
//
//   bitsweep quantize --format F [--rounding R] [--seed S] [--raw] [VALUE ...]
//
// Values come from the command line, or whitespace-separated from stdin when none are given.
// The table has one row per value: the input (as float32), the output, and the output's bits
// in the format (sign/exponent/mantissa groups for float and mask formats, two's complement
// integer.fraction bits for fixed point, the B-bit integer for int:B). --raw prints only the
// outputs, one per line, with %.9g (enough to read the float32 back exactly).
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/trainer/quant/format.h"

namespace CLI {
class App;
}

namespace bitsweep::client {

struct QuantizeRequest {
  std::string format;                // a format spec (DESIGN §4), e.g. "fp16", "fixed:8,4"
  std::string rounding = "nearest";  // truncate | nearest | stochastic
  // Stochastic rounding: value i (0-based) gets the random bits ElementRandom(seed, i), as the
  // trainer's Quantizer::Apply(data, n, seed) would give it.
  uint64_t seed = 0;
  bool raw = false;
  std::vector<std::string> values;  // empty: read stdin
};

// Parses whitespace-separated numbers: decimal or hexadecimal floats ("0x1p-24"), an optional
// sign, inf/infinity/nan in any case. Empty text gives no values.
// Errors: InvalidArgument "value N: 'TOKEN' is not a number" (N counts from 1; the token is
// escaped and cut to 40 characters) or "value N: 'TOKEN' is out of range" (beyond double).
absl::StatusOr<std::vector<double>> ParseQuantizeValues(std::string_view text);

// The bit pattern of `value` (already on the grid of `format`) as the format stores it, e.g.
// "0 01111 0000000000" (fp16 1.0), "0001.1000" (fixed:8,4 1.5). `frac_bits` is the fractional
// length to show for fixed, dynfixed and dps; int_scale is int:B's per-tensor step.
std::string QuantizedBits(const trainer::Format& format, int frac_bits, double int_scale,
                          float value);

// Runs the command: reads values (from request.values, else all of `in`), quantises them as one
// tensor, and writes the table (or the raw outputs) to `out`.
// Errors: InvalidArgument (bad format, rounding or value; no values at all).
absl::Status RunQuantize(const QuantizeRequest& request, std::istream& in, std::ostream& out);

// Registers `quantize` on the CLI. When it is chosen, `set_run` receives the function that
// runs it (returning the exit code), reading `in` and writing `out`.
using LocalRun = std::function<absl::StatusOr<int>()>;
void AddQuantizeCommand(CLI::App& app, std::istream* in, std::ostream* out,
                        const std::function<void(LocalRun)>& set_run);

}  // namespace bitsweep::client
