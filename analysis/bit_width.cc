#include "analysis/bit_width.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace bitsweep::analysis {
namespace {

// Parses "a" or "a,b" into 1 or 2 positive ints.
absl::StatusOr<std::vector<int>> ParseInts(absl::string_view format, absl::string_view args,
                                           size_t expected) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(args, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 0 || v > 128) {
      return absl::InvalidArgumentError(
          absl::StrCat("format \"", format, "\": \"", part, "\" is not a bit count"));
    }
    out.push_back(v);
  }
  if (out.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("format \"", format, "\": expected ", expected, " number(s) after the colon"));
  }
  return out;
}

}  // namespace

absl::StatusOr<int> ParseBitWidth(const std::string& format) {
  if (format == "fp32") return 32;
  if (format == "fp64") return 64;
  if (format == "fp16" || format == "bf16") return 16;
  if (format == "tf32") return 19;
  if (format == "fp8e5m2" || format == "fp8e4m3") return 8;
  absl::string_view args = format;
  if (absl::ConsumePrefix(&args, "float:")) {
    auto v = ParseInts(format, args, 2);
    if (!v.ok()) return v.status();
    return 1 + (*v)[0] + (*v)[1];
  }
  if (absl::ConsumePrefix(&args, "fixed:")) {
    auto v = ParseInts(format, args, 2);
    if (!v.ok()) return v.status();
    return (*v)[0];
  }
  if (absl::ConsumePrefix(&args, "dps:")) {
    auto v = ParseInts(format, args, 2);
    if (!v.ok()) return v.status();
    return (*v)[0] + (*v)[1];
  }
  for (absl::string_view prefix : {"mask:", "int:", "dynfixed:"}) {
    if (absl::ConsumePrefix(&args, prefix)) {
      auto v = ParseInts(format, args, 1);
      if (!v.ok()) return v.status();
      return (*v)[0];
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("\"", format, "\" is not a number format"));
}

bool IsFloat32Baseline(const std::string& format) {
  return format == "fp32" || format == "mask:32" || format == "float:8,23";
}

}  // namespace bitsweep::analysis
