#include "common/tls/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hipserve::tls {
namespace {

constexpr char kSystemRoots[] = "system";

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();  // NOLINT(runtime/int): OpenSSL's type
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": cannot read"));
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().empty()) return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": empty"));
  return s.str();
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of a PEM file (which must hold at least one).
absl::StatusOr<X509Ptr> FirstCertificate(const std::string& pem, const std::string& flag,
                                         const std::string& path) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": not a PEM X.509 certificate (", OpenSslError(), ")"));
  }
  return cert;
}

}  // namespace

bool ServerTlsEnabled(const TlsFiles& f) { return !f.cert_file.empty() || !f.key_file.empty(); }

bool ClientTlsEnabled(const TlsFiles& f) {
  return !f.ca_file.empty() || !f.cert_file.empty() || !f.key_file.empty();
}

absl::StatusOr<TlsPem> LoadPem(const TlsFiles& files, absl::string_view flag_prefix) {
  const std::string cert_flag = absl::StrCat(flag_prefix, "cert_file");
  const std::string key_flag = absl::StrCat(flag_prefix, "key_file");
  const std::string ca_flag = absl::StrCat(flag_prefix, "ca_file");
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_flag, " and ", key_flag, " go together: set both or neither"));
  }
  TlsPem pem;
  if (!files.cert_file.empty()) {
    auto cert = ReadFile(files.cert_file, cert_flag);
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(files.key_file, key_flag);
    if (!key.ok()) return key.status();
    pem.cert = *std::move(cert);
    pem.key = *std::move(key);
    auto x509 = FirstCertificate(pem.cert, cert_flag, files.cert_file);
    if (!x509.ok()) return x509.status();
    ERR_clear_error();
    BioPtr bio = MemBio(pem.key);
    PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (pkey == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(key_flag, "=", files.key_file,
                                                     ": not a PEM private key (unencrypted) (",
                                                     OpenSslError(), ")"));
    }
    if (X509_check_private_key(x509->get(), pkey.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(key_flag, "=", files.key_file,
                                                     " is not the private key of ", cert_flag, "=",
                                                     files.cert_file));
    }
  }
  if (!files.ca_file.empty() && files.ca_file != kSystemRoots) {
    auto ca = ReadFile(files.ca_file, ca_flag);
    if (!ca.ok()) return ca.status();
    pem.ca = *std::move(ca);
    auto x509 = FirstCertificate(pem.ca, ca_flag, files.ca_file);
    if (!x509.ok()) return x509.status();
  }
  return pem;
}

absl::Status CheckMutualTlsFiles(const TlsFiles& files, absl::string_view flag_prefix) {
  std::vector<std::string> missing;
  if (files.cert_file.empty()) missing.push_back(absl::StrCat(flag_prefix, "cert_file"));
  if (files.key_file.empty()) missing.push_back(absl::StrCat(flag_prefix, "key_file"));
  if (files.ca_file.empty()) missing.push_back(absl::StrCat(flag_prefix, "ca_file"));
  if (missing.empty() || missing.size() == 3) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("mutual TLS needs ", flag_prefix, "cert_file, ", flag_prefix, "key_file and ",
                   flag_prefix, "ca_file together; missing: ", absl::StrJoin(missing, ", ")));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsFiles& files, ClientCertPolicy policy, absl::string_view flag_prefix) {
  if (!ServerTlsEnabled(files)) {
    if (!files.ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(flag_prefix, "ca_file needs ", flag_prefix,
                                                     "cert_file and ", flag_prefix, "key_file"));
    }
    return grpc::InsecureServerCredentials();
  }
  if (policy == ClientCertPolicy::kRequireAndVerify && files.ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verifying client certificates needs ", flag_prefix, "ca_file (the CA that signs them)"));
  }
  auto pem = LoadPem(files, flag_prefix);
  if (!pem.ok()) return pem.status();
  grpc::SslServerCredentialsOptions o(
      policy == ClientCertPolicy::kRequireAndVerify
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (policy == ClientCertPolicy::kRequireAndVerify) o.pem_root_certs = pem->ca;
  o.pem_key_cert_pairs.push_back({pem->key, pem->cert});
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsFiles& files, absl::string_view flag_prefix) {
  if (!ClientTlsEnabled(files)) return grpc::InsecureChannelCredentials();
  auto pem = LoadPem(files, flag_prefix);
  if (!pem.ok()) return pem.status();
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = pem->ca;  // "" = gRPC's default roots
  o.pem_private_key = pem->key;
  o.pem_cert_chain = pem->cert;
  return grpc::SslCredentials(o);
}

}  // namespace hipserve::tls
