#include "coordinator/cli/client_flags.h"

#include "absl/flags/flag.h"
#include "common/tls/tls.h"
#include "coordinator/cli/client.h"

ABSL_FLAG(std::string, client_tls_ca_file, "",
          "Connect with TLS and verify the server's certificate against these CA certificates "
          "(PEM); 'system' = the default root store. The certificate must name the host of "
          "--server. Empty (and no --tls_cert_file) = plaintext.");
ABSL_FLAG(std::string, client_tls_cert_file, "",
          "Client certificate (PEM) to present over TLS, with --tls_key_file, for servers that "
          "verify clients.");
ABSL_FLAG(std::string, client_tls_key_file, "", "Private key (PEM) of --tls_cert_file.");

namespace hipserve::cli {

absl::Status ApplyClientTlsFlags() {
  return SetClientTls({absl::GetFlag(FLAGS_client_tls_cert_file),
                       absl::GetFlag(FLAGS_client_tls_key_file),
                       absl::GetFlag(FLAGS_client_tls_ca_file)});
}

}  // namespace hipserve::cli
