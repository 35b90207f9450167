// Server TLS credentials whose certificate and key (and, for mutual TLS, CA) can be replaced
// while the server runs, for certificate rotation without a restart (SIGHUP).
//
// Reload() reads the files again and checks them exactly as ServerCredentials does (each
// certificate parses, the key matches the certificate); only a good set replaces the one in
// use, so a half-written or wrong file keeps the previous certificate (the error is returned).
// Connections made after a successful Reload get the new certificate within about
// kReloadLatencySeconds; connections already open keep theirs.
//
// How: gRPC's FileWatcherCertificateProvider (grpc::experimental, 1.51) polls files once a
// second. It watches private in-memory files (memfd, /proc/self/fd/N) that hold the last checked
// key and certificate in one PEM (so a key never pairs with another certificate), not the
// configured files: those are only read by Create and Reload. A reload replaces the memfd behind
// N in one dup3(), atomically for the watcher.
//
// Owns the memfds, which the watcher reads by descriptor number: destroy it only after every
// server built with credentials() has shut down. Thread-safe: Reload may run on any thread,
// concurrently with handshakes. Linux only (memfd_create, /proc/self/fd).
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tls/tls.h"

namespace hipserve::tls {

inline constexpr int kReloadLatencySeconds = 1;  // the watcher's poll interval

class ReloadableServerCredentials {
 public:
  // As ServerCredentials (same checks and errors, naming the flags by `flag_prefix`); without
  // TLS files, plaintext credentials that Reload leaves as they are.
  static absl::StatusOr<std::unique_ptr<ReloadableServerCredentials>> Create(
      const TlsFiles& files, ClientCertPolicy policy, absl::string_view flag_prefix);
  ~ReloadableServerCredentials();
  ReloadableServerCredentials(const ReloadableServerCredentials&) = delete;
  ReloadableServerCredentials& operator=(const ReloadableServerCredentials&) = delete;

  // For ServerBuilder::AddListeningPort (and SetAuthMetadataProcessor).
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  bool tls() const { return identity_fd_ >= 0; }

  // Re-reads the files; on success new handshakes use them within kReloadLatencySeconds. On
  // error (InvalidArgument naming the flag) the previous certificate stays. OK and nothing to
  // do without TLS.
  absl::Status Reload();

  // The checked files as last loaded (Create or a successful Reload); null without TLS. For
  // servers outside gRPC that follow the same rotation (the HTTPS port).
  std::shared_ptr<const TlsPem> pem() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pem_;
  }

 private:
  ReloadableServerCredentials(TlsFiles files, ClientCertPolicy policy, std::string flag_prefix)
      : files_(std::move(files)), policy_(policy), flag_prefix_(std::move(flag_prefix)) {}

  TlsFiles files_;
  ClientCertPolicy policy_;
  std::string flag_prefix_;
  mutable std::mutex mu_;  // serialises Reloads; guards pem_
  std::shared_ptr<const TlsPem> pem_;
  int identity_fd_ = -1;  // memfd: key PEM, then the certificate chain PEM
  int root_fd_ = -1;      // memfd: CA PEM (kRequireAndVerify only)
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

}  // namespace hipserve::tls
