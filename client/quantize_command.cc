#include "client/quantize_command.h"

#include <CLI/CLI.hpp>
#include <bit>
#include <charconv>
#include <cmath>
#include <iterator>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/text_table.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/sites.h"

namespace bitsweep::client {
namespace {

using trainer::Format;
using trainer::FormatKind;

constexpr size_t kMaxTokenInMessage = 40;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string Quoted(std::string_view token) {
  std::string shown(token.substr(0, kMaxTokenInMessage));
  shown = absl::CHexEscape(shown);
  if (token.size() > kMaxTokenInMessage) shown += "...";
  return absl::StrCat("'", shown, "'");
}

// One token as a double: [+-] then a decimal or 0x hexadecimal float, inf or nan.
absl::StatusOr<double> ParseNumber(std::string_view token, size_t index) {
  std::string_view rest = token;
  bool negative = false;
  if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
    negative = rest[0] == '-';
    rest.remove_prefix(1);
  }
  std::chars_format format = std::chars_format::general;
  if (rest.size() > 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X')) {
    format = std::chars_format::hex;
    rest.remove_prefix(2);
  }
  double value = 0;
  // from_chars takes no sign of its own here: "--1" and "+-1" are not numbers.
  const bool signed_again = !rest.empty() && (rest[0] == '-' || rest[0] == '+');
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value, format);
  if (rest.empty() || signed_again || end != rest.data() + rest.size() ||
      ec == std::errc::invalid_argument) {
    return absl::InvalidArgumentError(
        absl::StrCat("value ", index, ": ", Quoted(token), " is not a number"));
  }
  if (ec == std::errc::result_out_of_range) {
    return absl::InvalidArgumentError(
        absl::StrCat("value ", index, ": ", Quoted(token), " is out of range"));
  }
  return negative ? -value : value;
}

// `width` low bits of k, most significant first.
std::string Binary(uint64_t k, int width) {
  std::string s;
  for (int b = width - 1; b >= 0; --b) s.push_back(((k >> b) & 1) ? '1' : '0');
  return s;
}

std::string FloatBits(int exponent_bits, int mantissa_bits, float value) {
  const bool negative = std::signbit(value);
  const uint64_t all_ones = (uint64_t{1} << exponent_bits) - 1;
  uint64_t exponent = 0, mantissa = 0;
  if (std::isnan(value)) {
    exponent = all_ones;
    mantissa = mantissa_bits > 0 ? uint64_t{1} << (mantissa_bits - 1) : 0;
  } else if (std::isinf(value)) {
    exponent = all_ones;
  } else if (value != 0) {
    const int bias = (1 << (exponent_bits - 1)) - 1;
    const int emin = 1 - bias;
    const double a = std::fabs(static_cast<double>(value));
    if (a < std::ldexp(1.0, emin)) {  // subnormal: 0.mantissa · 2^emin
      mantissa = static_cast<uint64_t>(std::ldexp(a, mantissa_bits - emin));
    } else {
      int e = 0;
      std::frexp(a, &e);  // a = f · 2^e, f in [0.5, 1)
      --e;
      exponent = static_cast<uint64_t>(e + bias);
      mantissa = static_cast<uint64_t>(std::ldexp(std::ldexp(a, -e) - 1.0, mantissa_bits));
    }
  }
  std::string bits = absl::StrCat(negative ? "1" : "0", " ", Binary(exponent, exponent_bits));
  if (mantissa_bits > 0) absl::StrAppend(&bits, " ", Binary(mantissa, mantissa_bits));
  return bits;
}

// k in `word_bits` two's complement bits, with a point before the last `frac_bits` when that
// falls inside the word.
std::string FixedBits(int word_bits, int frac_bits, double steps) {
  const auto k = static_cast<int64_t>(steps);
  std::string bits = Binary(static_cast<uint64_t>(k), word_bits);
  if (frac_bits > 0 && frac_bits < word_bits) bits.insert(bits.size() - frac_bits, ".");
  return bits;
}

}  // namespace

absl::StatusOr<std::vector<double>> ParseQuantizeValues(std::string_view text) {
  std::vector<double> values;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && IsSpace(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !IsSpace(text[i])) ++i;
    if (i == start) break;
    absl::StatusOr<double> value = ParseNumber(text.substr(start, i - start), values.size() + 1);
    if (!value.ok()) return value.status();
    values.push_back(*value);
  }
  return values;
}

std::string QuantizedBits(const Format& format, int frac_bits, double int_scale, float value) {
  switch (format.kind) {
    case FormatKind::kFp32:
      return FloatBits(8, 23, value);
    case FormatKind::kMask:
      return FloatBits(8, format.mask_bits - 9, value);
    case FormatKind::kFloat:
      return FloatBits(format.exponent_bits, format.mantissa_bits, value);
    case FormatKind::kFixed:
    case FormatKind::kDynFixed:
    case FormatKind::kDps: {
      if (std::isnan(value)) return "NaN";
      const int wl =
          format.kind == FormatKind::kDps ? format.int_bits + frac_bits : format.word_bits;
      return FixedBits(wl, frac_bits, std::nearbyint(std::ldexp(double{value}, frac_bits)));
    }
    case FormatKind::kInt:
      if (std::isnan(value)) return "NaN";
      if (int_scale == 0) return Binary(0, format.word_bits);
      return FixedBits(format.word_bits, 0, std::nearbyint(double{value} / int_scale));
  }
  return "?";
}

absl::Status RunQuantize(const QuantizeRequest& request, std::istream& in, std::ostream& out) {
  absl::StatusOr<Format> format = trainer::ParseFormat(request.format);
  if (!format.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--format: ", format.status().message()));
  }
  absl::StatusOr<trainer::Rounding> rounding = trainer::ParseRounding(request.rounding);
  if (!rounding.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--rounding: ", rounding.status().message()));
  }
  std::string text;
  if (request.values.empty()) {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    for (const std::string& value : request.values) absl::StrAppend(&text, value, "\n");
  }
  absl::StatusOr<std::vector<double>> values = ParseQuantizeValues(text);
  if (!values.ok()) return values.status();
  if (values->empty()) {
    return absl::InvalidArgumentError(
        "no values to quantise: give them as arguments or on stdin (see bitsweep quantize --help)");
  }

  std::vector<float> inputs(values->begin(), values->end());  // beyond float32: ±inf
  std::vector<float> outputs = inputs;
  // The trainer's site quantiser: dynfixed picks its FL from the values (its first
  // application), dps starts at ⟨IL, FL⟩, the static formats are plain quantisers.
  trainer::SiteQuantizer quantizer(*format, *rounding, trainer::DynamicOptions());
  quantizer.Apply(0, outputs.data(), static_cast<int64_t>(outputs.size()), request.seed);

  if (request.raw) {
    for (float y : outputs) out << absl::StrFormat("%.9g\n", y);
    return absl::OkStatus();
  }
  int frac_bits = format->frac_bits;
  if (format->kind == FormatKind::kDynFixed) frac_bits = quantizer.dynfixed_frac_bits(0);
  double int_scale = 0;
  if (format->kind == FormatKind::kInt) {
    double max = 0;
    for (float x : inputs) {
      if (std::isfinite(x)) max = std::max(max, std::fabs(double{x}));
    }
    int_scale = max / (std::ldexp(1.0, format->word_bits - 1) - 1);
  }
  out << format->ToString() << ", " << trainer::RoundingName(*rounding);
  if (*rounding == trainer::Rounding::kStochastic) out << ", seed " << request.seed;
  if (format->kind == FormatKind::kDynFixed || format->kind == FormatKind::kDps) {
    out << ", FL " << frac_bits;
  }
  if (format->kind == FormatKind::kInt) out << absl::StrFormat(", scale %.9g", int_scale);
  out << "\n";
  TextTable table({"input", "output", "bits"});
  table.SetAlign(0, TextTable::Align::kRight);
  table.SetAlign(1, TextTable::Align::kRight);
  for (size_t i = 0; i < inputs.size(); ++i) {
    table.AddRow({absl::StrFormat("%.9g", inputs[i]), absl::StrFormat("%.9g", outputs[i]),
                  QuantizedBits(*format, frac_bits, int_scale, outputs[i])});
  }
  table.Render(out);
  return absl::OkStatus();
}

void AddQuantizeCommand(CLI::App& app, std::istream* in, std::ostream* out,
                        const std::function<void(LocalRun)>& set_run) {
  auto request = std::make_shared<QuantizeRequest>();
  CLI::App* command = app.add_subcommand(
      "quantize", "Round numbers onto a format's grid and show their bits (no server needed)");
  command
      ->add_option("--format", request->format,
                   "fp32, float:E,M, fp16, bf16, tf32, fp8e5m2, fp8e4m3, mask:B, fixed:WL,FL, "
                   "int:B, dynfixed:WL, dps:IL,FL")
      ->required();
  command->add_option("--rounding", request->rounding, "truncate, nearest or stochastic")
      ->capture_default_str();
  command
      ->add_option("--seed", request->seed,
                   "Random stream of stochastic rounding (value i uses element i)")
      ->capture_default_str();
  command->add_flag("--raw", request->raw, "Print only the outputs, one per line (%.9g)");
  command->add_option("VALUE", request->values,
                      "Numbers to quantise (default: whitespace-separated on stdin)");
  command->footer(
      "Example:\n"
      "  bitsweep quantize --format fp16 0.1 65519 1e-7\n"
      "  bitsweep quantize --format fixed:8,4 --rounding stochastic --seed 3 -1.3 2.71\n"
      "  seq 0 0.1 1 | bitsweep quantize --format mask:12 --rounding truncate --raw");
  command->callback([request, in, out, set_run] {
    set_run([request, in, out]() -> absl::StatusOr<int> {
      absl::Status status = RunQuantize(*request, *in, *out);
      if (!status.ok()) return status;
      return 0;
    });
  });
}

}  // namespace bitsweep::client
