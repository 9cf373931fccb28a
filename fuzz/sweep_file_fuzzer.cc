// Fuzz target: sweep-file YAML -> SweepSpec (client/sweep_file.h) -> trials (the server's
// SweepExpander and config patcher). Whatever the text, parsing and expansion must return a
// status, never crash, hang or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "client/sweep_file.h"
#include "server/sweep_expander.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<bitsweep::v1::SweepSpec> spec =
      bitsweep::client::ParseSweepYaml(text, "fuzz.yaml");
  if (!spec.ok()) return 0;
  // A small limit keeps each run fast; the limit check itself is exercised all the same.
  static const bitsweep::server::SweepExpander expander(
      bitsweep::server::SweepExpanderOptions{.max_trials = 2000});
  absl::StatusOr<int64_t> count = expander.CountTrials(*spec);
  absl::StatusOr<std::vector<bitsweep::server::PlannedTrial>> trials = expander.Expand(*spec);
  // Expand accepts exactly the specs whose shape CountTrials accepts, with that many trials.
  if (trials.ok() && (!count.ok() || *count != static_cast<int64_t>(trials->size()))) abort();
  return 0;
}
