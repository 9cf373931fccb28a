// Fuzz target: the `bitsweep quantize` value parser (client/quantize_command.h), the format and
// rounding spec parsers (worker/trainer/quant/format.h) and the Quantizer they configure.
// Input: "FORMAT\nROUNDING\nVALUES\n" then raw float32 values; the values of both kinds are
// quantised. Checks the
// documented semantics on every value: NaN stays NaN, a non-NaN value never becomes NaN, a
// zero keeps its sign, and for the static formats with a deterministic rounding quantising
// twice changes nothing (the result is on the format's grid).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/quantize_command.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/quantizer.h"

namespace {

using bitsweep::trainer::Format;
using bitsweep::trainer::FormatKind;
using bitsweep::trainer::Quantizer;
using bitsweep::trainer::Rounding;

// Splits off the text up to the next '\n' (all of it if there is none).
absl::string_view NextLine(absl::string_view* rest) {
  const size_t end = rest->find('\n');
  absl::string_view line = rest->substr(0, end);
  rest->remove_prefix(end == absl::string_view::npos ? rest->size() : end + 1);
  return line;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view rest(reinterpret_cast<const char*>(data), size);
  const absl::string_view format_text = NextLine(&rest);
  const absl::string_view rounding_text = NextLine(&rest);
  const absl::string_view values_text = NextLine(&rest);
  absl::StatusOr<std::vector<double>> parsed = bitsweep::client::ParseQuantizeValues(
      std::string_view(values_text.data(), values_text.size()));
  absl::StatusOr<Format> format = bitsweep::trainer::ParseFormat(format_text);
  absl::StatusOr<Rounding> rounding = bitsweep::trainer::ParseRounding(rounding_text);
  if (format.ok()) {
    // The canonical text parses back to the same format.
    absl::StatusOr<Format> again = bitsweep::trainer::ParseFormat(format->ToString());
    if (!again.ok() || again->ToString() != format->ToString()) abort();
  }
  if (!format.ok() || !rounding.ok()) return 0;

  std::vector<float> values(rest.size() / sizeof(float));
  if (!values.empty()) std::memcpy(values.data(), rest.data(), values.size() * sizeof(float));
  if (parsed.ok()) {
    for (double value : *parsed) {
      // Beyond float's range the conversion is undefined: overflow to infinity explicitly.
      if (std::fabs(value) > std::numeric_limits<float>::max()) {
        values.push_back(std::copysign(std::numeric_limits<float>::infinity(), value));
      } else {
        values.push_back(static_cast<float>(value));
      }
    }
  }
  std::vector<float> once = values;
  const Quantizer quantizer(*format, *rounding);
  quantizer.Apply(once.data(), static_cast<int64_t>(once.size()), /*key=*/42);
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i]) != std::isnan(once[i])) abort();
    if (values[i] == 0.0f && !SameBits(values[i], once[i])) abort();
  }
  const bool grid_format = format->kind == FormatKind::kFloat ||
                           format->kind == FormatKind::kMask || format->kind == FormatKind::kFixed;
  if (grid_format && *rounding != Rounding::kStochastic) {
    std::vector<float> twice = once;
    quantizer.Apply(twice.data(), static_cast<int64_t>(twice.size()), /*key=*/42);
    for (size_t i = 0; i < once.size(); ++i) {
      if (!SameBits(once[i], twice[i]) && !(std::isnan(once[i]) && std::isnan(twice[i]))) abort();
    }
  }
  return 0;
}
