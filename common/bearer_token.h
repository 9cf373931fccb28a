// Bearer tokens (DESIGN §9): read from a file or an environment variable, sent as
// "authorization: Bearer <token>" metadata on every gRPC call. Tokens are secrets: nothing here
// logs them or puts them in an error message.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace bitsweep::common {

// The gRPC metadata key (lower case, as HTTP/2 requires).
inline constexpr char kAuthorizationMetadataKey[] = "authorization";

// Reads a token file: the first line, surrounding whitespace trimmed.
// Errors: NotFound/PermissionDenied (cannot read the file), InvalidArgument (empty token or
// characters outside printable ASCII, which metadata cannot carry).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The token from `--token-file` if given, else from the environment variable `env_name`, else
// "" (no token). `flag_name` names the flag in errors. Errors: as ReadTokenFile, and
// InvalidArgument for a malformed token in the environment variable.
absl::StatusOr<std::string> LoadToken(const std::string& flag_name, const std::string& path,
                                      const char* env_name);

// "Bearer <token>".
std::string BearerHeader(const std::string& token);

}  // namespace bitsweep::common
