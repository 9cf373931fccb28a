// Writes google.protobuf.Value trees (a sweep's `base` and swept values, as parsed from YAML)
// into protobuf messages through reflection, so every config field is settable by its dotted
// path without special cases. Every error names the offending path.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>

#include <string>

#include "absl/status/status.h"

namespace bitsweep::server {

// Applies `patch` over `message`: maps recurse into message fields, lists replace repeated
// fields wholesale, numbers set integer fields (integral and in range) or floating fields,
// strings set string (and enum) fields, bools set bool fields. Fields not in `patch` keep
// their value. `path` names `message` in errors, e.g. "base".
// Errors: InvalidArgument such as
//   "base.model.convs: unknown field (known: conv, kernel, ...)",
//   "base.train.batch_size: value "abc" is not an integer".
absl::Status ApplyStruct(const google::protobuf::Struct& patch, const std::string& path,
                         google::protobuf::Message* message);

// Sets the field at the dotted `field_path` (e.g. "precision.default.format") to `value`,
// converting as ApplyStruct does. Errors name `error_prefix` + `field_path`.
// Errors: InvalidArgument (unknown field, a segment that is not a message, wrong type,
// out of range).
absl::Status SetFieldAtPath(const std::string& field_path, const google::protobuf::Value& value,
                            const std::string& error_prefix, google::protobuf::Message* message);

// The value as a human reads it: strings unquoted, integral numbers without a fraction,
// lists as "[32, 32]". Used for TrialParam.value.
std::string ValueDisplayText(const google::protobuf::Value& value);

// As ValueDisplayText, but strings quoted: for error messages.
std::string ValueErrorText(const google::protobuf::Value& value);

}  // namespace bitsweep::server
