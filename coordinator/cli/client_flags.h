// The TLS flags every client command shares (`generate`, `inspect`, `bench`): absl flags named
// client_<flag> (see common/flags/flags.h for how a command owns them).
#pragma once

#include "absl/status/status.h"

namespace hipserve::cli {

// The prefix of the shared client flags' absl names; list it in CommandSpec::prefixes.
inline constexpr char kClientFlagPrefix[] = "client_";

// --tls_ca_file / --tls_cert_file / --tls_key_file -> SetClientTls (coordinator/cli/client.h).
// InvalidArgument naming the flag when a file is missing or malformed.
absl::Status ApplyClientTlsFlags();

}  // namespace hipserve::cli
