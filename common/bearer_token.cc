#include "common/bearer_token.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace bitsweep::common {
namespace {

absl::Status CheckToken(const std::string& token, const std::string& source) {
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat(source, ": the token is empty"));
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": the token must be printable ASCII without spaces"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int error = errno;
    std::string message = absl::StrCat("cannot read token file ", path, ": ", std::strerror(error));
    if (error == EACCES) return absl::PermissionDeniedError(message);
    return absl::NotFoundError(message);
  }
  std::string line;
  std::getline(in, line);
  std::string token(absl::StripAsciiWhitespace(line));
  if (absl::Status status = CheckToken(token, absl::StrCat("token file ", path)); !status.ok()) {
    return status;
  }
  return token;
}

absl::StatusOr<std::string> LoadToken(const std::string& flag_name, const std::string& path,
                                      const char* env_name) {
  if (!path.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(path);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat(flag_name, ": ", token.status().message()));
    }
    return token;
  }
  const char* value = std::getenv(env_name);
  if (value == nullptr || *value == '\0') return std::string();
  std::string token(absl::StripAsciiWhitespace(value));
  if (absl::Status status = CheckToken(token, absl::StrCat("environment variable ", env_name));
      !status.ok()) {
    return status;
  }
  return token;
}

std::string BearerHeader(const std::string& token) { return absl::StrCat("Bearer ", token); }

}  // namespace bitsweep::common
