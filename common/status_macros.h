// Status propagation helpers used across every module boundary.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HIPSERVE_CONCAT_INNER(a, b) a##b
#define HIPSERVE_CONCAT(a, b) HIPSERVE_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` yields a non-OK absl::Status.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status _hipserve_status = (expr);            \
    if (!_hipserve_status.ok()) return _hipserve_status; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  HIPSERVE_ASSIGN_OR_RETURN_IMPL(HIPSERVE_CONCAT(_hipserve_statusor_, __LINE__), lhs, rexpr)
#define HIPSERVE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                   \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()
