// BearerTokens: the optional bearer-token check of the public API (gRPC and HTTP alike).
//
// The tokens live in a file, one per line (blank lines and lines starting with '#' ignored),
// named by --auth_tokens_file. The file is re-read when its modification time changes (checked
// at most once a second), so rotating tokens needs no restart and no signal. A check compares
// against every token in constant time per token, so timing does not reveal a prefix.
//   no "Bearer <token>" credential  -> UNAUTHENTICATED
//   a token not in the file         -> PERMISSION_DENIED
// Thread-safe; shared by the gRPC service and the HTTP server for the process's lifetime.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hipserve::coordinator {

class BearerTokens {
 public:
  // Reads `path`; InvalidArgument when it cannot be read or holds no token.
  static absl::StatusOr<std::shared_ptr<BearerTokens>> Load(const std::string& path);

  // `authorization` is the header / metadata value, e.g. "Bearer abc" (scheme case-insensitive).
  absl::Status Check(absl::string_view authorization) const;

  size_t size() const;

 private:
  explicit BearerTokens(std::string path) : path_(std::move(path)) {}
  // Re-reads the file when its mtime changed (at most once a second). Keeps the old tokens when
  // the new file is unreadable or empty (and logs why).
  void MaybeReload() const;

  const std::string path_;
  mutable std::mutex mu_;
  mutable std::vector<std::string> tokens_;
  mutable int64_t mtime_ns_ = -1;
  mutable std::chrono::steady_clock::time_point next_check_;
};

// Reads a token file's tokens (exposed for tests).
absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path);

}  // namespace hipserve::coordinator
