#include "common/tls/reloadable_credentials.h"

#include <fcntl.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hipserve::tls {
namespace {

// A close-on-exec memfd holding `data`; -1 and errno on failure.
int MemFile(const std::string& data) {
  const int fd = memfd_create("hipserve-tls", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Puts `data` behind the descriptor number *fd: a fresh memfd (the first time) or one swapped
// in atomically with dup3, so a reader of /proc/self/fd/<*fd> sees the old or the new contents.
absl::Status Store(const std::string& data, int* fd) {
  const int fresh = MemFile(data);
  if (fresh < 0) return Errno("tls: memfd_create");
  if (*fd < 0) {
    *fd = fresh;
    return absl::OkStatus();
  }
  if (dup3(fresh, *fd, O_CLOEXEC) < 0) {
    const absl::Status s = Errno("tls: dup3");
    close(fresh);
    return s;
  }
  close(fresh);
  return absl::OkStatus();
}

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

}  // namespace

absl::StatusOr<std::unique_ptr<ReloadableServerCredentials>> ReloadableServerCredentials::Create(
    const TlsFiles& files, ClientCertPolicy policy, absl::string_view flag_prefix) {
  // The same checks (and plaintext credentials without files) as ServerCredentials.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> plain =
      ServerCredentials(files, policy, flag_prefix);
  if (!plain.ok()) return plain.status();
  std::unique_ptr<ReloadableServerCredentials> r(
      new ReloadableServerCredentials(files, policy, std::string(flag_prefix)));
  if (!ServerTlsEnabled(files)) {
    r->credentials_ = *plain;
    return r;
  }
  absl::StatusOr<TlsPem> pem = LoadPem(files, flag_prefix);
  if (!pem.ok()) return pem.status();
  if (absl::Status s = Store(pem->key + "\n" + pem->cert, &r->identity_fd_); !s.ok()) return s;
  r->pem_ = std::make_shared<const TlsPem>(*pem);
  const bool mutual = policy == ClientCertPolicy::kRequireAndVerify;
  if (mutual) {
    if (absl::Status s = Store(pem->ca, &r->root_fd_); !s.ok()) return s;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      FdPath(r->identity_fd_), FdPath(r->identity_fd_), mutual ? FdPath(r->root_fd_) : "",
      kReloadLatencySeconds);
  grpc::experimental::TlsServerCredentialsOptions o(provider);
  o.watch_identity_key_cert_pairs();
  if (mutual) {
    o.watch_root_certs();
    o.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    o.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  r->credentials_ = grpc::experimental::TlsServerCredentials(o);
  if (r->credentials_ == nullptr) {
    return absl::InternalError(
        absl::StrCat(flag_prefix, "cert_file: gRPC refused the TLS options"));
  }
  return r;
}

ReloadableServerCredentials::~ReloadableServerCredentials() {
  if (identity_fd_ >= 0) close(identity_fd_);
  if (root_fd_ >= 0) close(root_fd_);
}

absl::Status ReloadableServerCredentials::Reload() {
  std::lock_guard<std::mutex> lock(mu_);
  if (identity_fd_ < 0) return absl::OkStatus();
  absl::StatusOr<TlsPem> pem = LoadPem(files_, flag_prefix_);
  if (!pem.ok()) return pem.status();
  if (root_fd_ >= 0) {
    if (absl::Status s = Store(pem->ca, &root_fd_); !s.ok()) return s;
  }
  RETURN_IF_ERROR(Store(pem->key + "\n" + pem->cert, &identity_fd_));
  pem_ = std::make_shared<const TlsPem>(*std::move(pem));
  return absl::OkStatus();
}

}  // namespace hipserve::tls
