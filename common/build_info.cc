#include "common/build_info.h"

// Defined by common/CMakeLists.txt for this file only, so a new git description rebuilds one
// object file.
#ifndef BITSWEEP_VERSION_STRING
#define BITSWEEP_VERSION_STRING "unknown"
#endif
#ifndef BITSWEEP_GIT_DESCRIBE
#define BITSWEEP_GIT_DESCRIBE "unknown"
#endif
#ifndef BITSWEEP_COMPILER
#define BITSWEEP_COMPILER "unknown"
#endif
#ifndef BITSWEEP_BUILD_TYPE
#define BITSWEEP_BUILD_TYPE "unknown"
#endif

namespace bitsweep::common {

std::string VersionLine(const std::string& program) {
  return program + " " + BITSWEEP_VERSION_STRING + " (git " + BITSWEEP_GIT_DESCRIBE + ", " +
         BITSWEEP_COMPILER + ", " + BITSWEEP_BUILD_TYPE + ")";
}

}  // namespace bitsweep::common
