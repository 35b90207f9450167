// BearerTokens: the optional bearer-token check of the public API (gRPC and HTTP alike).
//
// The tokens live in a file named by --auth_tokens_file, one per line: `<token> [<client>]`
// (blank lines and lines starting with '#' ignored). <client> names the caller for per-client
// limits and logs; several tokens may share one name (a rotation pair counts as one client).
// Without a name the client is "token-" + 8 hex digits of a hash of the token (never the token).
// The file is re-read when its modification time changes (checked at most once a second) and at
// once on Reload() (SIGHUP), so rotating tokens needs no restart. A reload that fails (file
// unreadable or without a token) keeps the previous tokens and logs why. A check compares
// against every token in constant time per token, so timing does not reveal a prefix.
//   no "Bearer <token>" credential  -> UNAUTHENTICATED
//   a token not in the file         -> PERMISSION_DENIED
// Thread-safe; shared by the gRPC service and the HTTP server for the process's lifetime.
#pragma once

#include <grpcpp/security/auth_metadata_processor.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hipserve::coordinator {

struct TokenEntry {
  std::string token;
  std::string client;  // the line's name, or "token-<hash>"
  bool operator==(const TokenEntry& o) const { return token == o.token && client == o.client; }
};

class BearerTokens {
 public:
  // Reads `path`; InvalidArgument when it cannot be read or holds no token.
  static absl::StatusOr<std::shared_ptr<BearerTokens>> Load(const std::string& path);

  // `authorization` is the header / metadata value, e.g. "Bearer abc" (scheme case-insensitive).
  absl::Status Check(absl::string_view authorization) const;
  // Like Check; on success the client the token belongs to.
  absl::StatusOr<std::string> Identify(absl::string_view authorization) const;

  // Re-reads the file now (SIGHUP). On error keeps the previous tokens, logs and returns it.
  absl::Status Reload();

  size_t size() const;

 private:
  explicit BearerTokens(std::string path) : path_(std::move(path)) {}
  // Re-reads the file when its mtime changed (at most once a second). Keeps the old tokens when
  // the new file is unreadable or empty (and logs why).
  void MaybeReloadLocked() const;
  absl::Status ReloadLocked() const;

  const std::string path_;
  mutable std::mutex mu_;
  mutable std::vector<TokenEntry> tokens_;
  mutable int64_t mtime_ns_ = -1;
  mutable std::chrono::steady_clock::time_point next_check_;
};

// Reads a token file's entries (exposed for tests).
absl::StatusOr<std::vector<TokenEntry>> ReadTokenFile(const std::string& path);

// Checks bearer tokens on the gRPC methods whose path (":path", e.g.
// "/grpc.health.v1.Health/Check") starts with one of `path_prefixes`, before any handler runs;
// other methods pass (GenerationService checks its own). Used to close health and reflection
// (--auth_health_and_reflection). gRPC runs an AuthMetadataProcessor only on TLS ports.
std::shared_ptr<grpc::AuthMetadataProcessor> MakeTokenAuthProcessor(
    std::shared_ptr<const BearerTokens> tokens, std::vector<std::string> path_prefixes);

}  // namespace hipserve::coordinator
