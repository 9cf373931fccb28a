// Files compiled into the server binary at build time (server/embed_files.cmake), so that it
// runs from any directory: the SQL migrations and the dashboard's static assets.
#pragma once

#include <span>
#include <string_view>

namespace bitsweep::server {

struct EmbeddedFile {
  // File name without directory, e.g. "0001_initial.sql".
  std::string_view name;
  std::string_view contents;
};

// migrations/*.sql, sorted by name (= the order they are applied in).
std::span<const EmbeddedFile> EmbeddedMigrations();

// web/*, sorted by name.
std::span<const EmbeddedFile> EmbeddedWebAssets();

}  // namespace bitsweep::server
