#include "client/cli_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace bitsweep::client {

absl::StatusOr<CliConfig> ReadCliConfig(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat("config file ", path, ": no such file"));
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  CliConfig config;
  if (root.IsNull()) return config;  // an empty file sets nothing
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": expected a mapping such as 'server: host:port'"));
  }
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>("");
    if (key == "server") {
      if (!entry.second.IsScalar() || entry.second.Scalar().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config file ", path, ": server: expected host:port"));
      }
      config.server = entry.second.Scalar();
    } else {
      // Strict, so that a misspelt key does not silently leave the default in place.
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, ": unknown key '", key, "' (known: server)"));
    }
  }
  return config;
}

std::string CliConfigPath(bool* explicit_path) {
  *explicit_path = false;
  if (const char* path = std::getenv("BITSWEEP_CONFIG"); path != nullptr && *path != '\0') {
    *explicit_path = true;
    return path;
  }
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return (std::filesystem::path(xdg) / "bitsweep" / "config.yaml").string();
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return (std::filesystem::path(home) / ".config" / "bitsweep" / "config.yaml").string();
  }
  return "";
}

}  // namespace bitsweep::client
