// RETURN_IF_ERROR / ASSIGN_OR_RETURN: propagate an absl::Status early, as Abseil's own
// macros will once Debian ships them. Not a logging or error-wrapping facility.
#ifndef STAGEHAND_RUNTIME_UTIL_STATUS_MACROS_H_
#define STAGEHAND_RUNTIME_UTIL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function with `expr`'s status unless it is OK. `expr` is an
// absl::Status or anything with .ok() that converts to one.
#define RETURN_IF_ERROR(expr)                                               \
  do {                                                                      \
    if (::absl::Status stagehand_status_ = (expr); !stagehand_status_.ok()) \
      return stagehand_status_;                                             \
  } while (false)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the absl::StatusOr `expr`; returns its status from
// the enclosing function if not OK, else moves its value into `lhs` (a declaration such as
// `auto x` or an existing variable).
#define ASSIGN_OR_RETURN(lhs, expr)                                                              \
  STAGEHAND_ASSIGN_OR_RETURN_IMPL_(STAGEHAND_STATUS_CONCAT_(stagehand_statusor_, __LINE__), lhs, \
                                   expr)

#define STAGEHAND_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()

#define STAGEHAND_STATUS_CONCAT_(a, b) STAGEHAND_STATUS_CONCAT_IMPL_(a, b)
#define STAGEHAND_STATUS_CONCAT_IMPL_(a, b) a##b

#endif  // STAGEHAND_RUNTIME_UTIL_STATUS_MACROS_H_
