// What was built, for --version and the first log line: operators comparing machines need to
// know whether two binaries are the same build.
#pragma once

#include <string>

namespace bitsweep::common {

// "PROGRAM VERSION (git DESCRIBE, COMPILER, BUILD_TYPE)", e.g.
// "bitsweep-server 0.1.0 (git 7a178fb-dirty, GNU 12.2.0, RelWithDebInfo)". The git description
// is taken when CMake configures ("unknown" outside a git checkout).
std::string VersionLine(const std::string& program);

}  // namespace bitsweep::common
