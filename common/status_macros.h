// Small helpers for absl::Status-returning code (Debian's abseil has no macros of its own).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BITSWEEP_CONCAT_INNER(a, b) a##b
#define BITSWEEP_CONCAT(a, b) BITSWEEP_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status bitsweep_status_ = (expr);            \
    if (!bitsweep_status_.ok()) return bitsweep_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` assigns the value of an absl::StatusOr or returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(BITSWEEP_CONCAT(bitsweep_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
