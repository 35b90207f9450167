// Flag checks shared by the GPU benchmark programs. Each program defines its flags with ABSL_FLAG,
// parses them with flags::ParseProgramFlagsOrExit (common/flags/flags.h: --help, unknown flags,
// malformed values) and then range-checks them here, before its first CUDA call, so that a bad
// value exits 2 with a message naming the flag on any machine, GPU or not.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/flags/flags.h"

namespace hipserve::bench {

// Prints "<program>: <message>" to stderr and exits 2 at the first failed check.
inline void ExitOnBadFlags(const char* program, std::initializer_list<absl::Status> checks) {
  for (const absl::Status& s : checks) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", program, std::string(s.message()).c_str());
      std::exit(2);
    }
  }
}

// OK when `values` is not empty (unless `allow_empty`) and every value satisfies `ok`; else
// InvalidArgument "--<flag> needs at least one value" / "--<flag>: every value must be <what>,
// got <value>".
template <typename T, typename Pred>
absl::Status CheckEach(const std::vector<T>& values, Pred ok, absl::string_view flag,
                       absl::string_view what, bool allow_empty = false) {
  if (values.empty() && !allow_empty) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " needs at least one value"));
  }
  for (const T& v : values) {
    if (!ok(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": every value must be ", what, ", got ", v));
    }
  }
  return absl::OkStatus();
}

// OK when `value` is one of `allowed`; else InvalidArgument "--<flag> must be a|b|c, got <value>".
inline absl::Status CheckOneOf(absl::string_view value,
                               std::initializer_list<absl::string_view> allowed,
                               absl::string_view flag) {
  for (absl::string_view a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " must be ", absl::StrJoin(allowed, "|"), ", got '", value, "'"));
}

// A 0|1 switch kept as an int so that the run scripts' "--flag 1" keeps working.
inline absl::Status CheckSwitch(int value, absl::string_view flag) {
  return flags::CheckFlag(value == 0 || value == 1, flag, "0 or 1", value);
}

}  // namespace hipserve::bench
