// Reading a sweep file (DESIGN §3): YAML in, bitsweep.v1.SweepSpec out.
//
// Only the structure is checked here (known keys, maps vs lists vs scalars, integer fields);
// whether a dotted path or a value makes sense is the server's call, since it owns the config
// schema. `base` and parameter values become google.protobuf.Value: maps → Struct, lists →
// ListValue; a plain scalar is a number if all of it parses as one (int or float), true/false
// (also True/TRUE/...) a bool, null/~ or nothing a null, anything else a string; a quoted
// scalar is always a string ("16" stays text). Every error starts with `SOURCE:LINE:COL: `
// (1-based) when a position is known.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bitsweep/v1/sweep.pb.h"

namespace bitsweep::client {

// Reads and parses the sweep file at `path`; errors name `path` as given.
// Errors: NotFound (missing or unreadable file); InvalidArgument (YAML syntax error, empty file,
// structural error such as an unknown key or a parameter that is not a list).
absl::StatusOr<v1::SweepSpec> ParseSweepFile(const std::string& path);

// Parses sweep YAML held in memory; `source_name` prefixes error messages.
// Errors: InvalidArgument, as for ParseSweepFile.
absl::StatusOr<v1::SweepSpec> ParseSweepYaml(absl::string_view text, absl::string_view source_name);

}  // namespace bitsweep::client
