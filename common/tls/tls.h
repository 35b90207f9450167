// gRPC TLS credentials from PEM files: the public port's server certificate, its clients (a CA
// and optionally a client certificate), and mutual TLS between the coordinator and its workers.
//
// The files are read and checked with OpenSSL before gRPC sees them (each certificate parses,
// the key matches its certificate), so a wrong file is an InvalidArgument naming the flag
// instead of a server that silently fails to listen. Files are read once, when the credentials
// are made; ReloadableServerCredentials (reloadable_credentials.h) re-reads them for rotation
// without a restart. Stateless functions; thread-safe.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hipserve::tls {

// PEM file paths as the flags give them; "" = not set.
struct TlsFiles {
  std::string cert_file;  // this side's certificate (chain), PEM
  std::string key_file;   // the private key of cert_file, PEM
  // CA certificates that verify the peer, PEM. For a client: "system" = the default root store
  // (a server with a publicly trusted certificate).
  std::string ca_file;
};

// The checked contents of TlsFiles ("" where the file was not set).
struct TlsPem {
  std::string cert, key, ca;
};

// Reads every file that is set. cert_file and key_file come together; each certificate file
// holds at least one X.509 certificate; the key matches cert_file's first certificate. Errors
// are InvalidArgument naming the flag as `flag_prefix` + "cert_file" / "key_file" / "ca_file"
// (flag_prefix e.g. "--tls_" or "--worker_tls_").
absl::StatusOr<TlsPem> LoadPem(const TlsFiles& files, absl::string_view flag_prefix);

// Who may connect to a TLS server.
enum class ClientCertPolicy {
  kNone,              // any client (server-side TLS only)
  kRequireAndVerify,  // a client certificate signed by ca_file (mutual TLS)
};

// True when `files` asks a server for TLS (cert_file or key_file set).
bool ServerTlsEnabled(const TlsFiles& files);
// True when `files` asks a client for TLS (ca_file, cert_file or key_file set).
bool ClientTlsEnabled(const TlsFiles& files);

// InsecureServerCredentials when !ServerTlsEnabled(files); else SSL with cert and key. With
// kRequireAndVerify ca_file is required too, and the handshake fails for a client without a
// certificate signed by it (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsFiles& files, ClientCertPolicy policy, absl::string_view flag_prefix);

// InsecureChannelCredentials when !ClientTlsEnabled(files); else SSL that verifies the server
// against ca_file (or the default roots for "system" / no ca_file) and presents cert and key
// when they are set. The server's certificate must name the host the channel dials.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsFiles& files, absl::string_view flag_prefix);

// For mutual TLS: all three files, or none. InvalidArgument naming the missing flags otherwise.
absl::Status CheckMutualTlsFiles(const TlsFiles& files, absl::string_view flag_prefix);

}  // namespace hipserve::tls
