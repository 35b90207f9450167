#include "coordinator/auth.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "proto/grpc_status.h"

namespace hipserve::coordinator {
namespace {

int64_t ModTimeNs(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
}

// Equal-length comparison whose time does not depend on where the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

// A stable, non-secret name for an unnamed token (32-bit FNV-1a).
uint32_t Fnv1a32(absl::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", path));
  std::vector<TokenEntry> tokens;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const absl::string_view t = absl::StripAsciiWhitespace(line);
    if (t.empty() || t[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(t, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat("token file ", path, " line ", line_no,
                                                     ": expected '<token> [<client name>]', got ",
                                                     fields.size(), " fields"));
    }
    TokenEntry e;
    e.token = std::string(fields[0]);
    e.client = fields.size() == 2
                   ? std::string(fields[1])
                   : absl::StrCat("token-", absl::Hex(Fnv1a32(e.token), absl::kZeroPad8));
    tokens.push_back(std::move(e));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds no token"));
  }
  return tokens;
}

absl::StatusOr<std::shared_ptr<BearerTokens>> BearerTokens::Load(const std::string& path) {
  std::shared_ptr<BearerTokens> t(new BearerTokens(path));
  t->mtime_ns_ = ModTimeNs(path);
  auto tokens = ReadTokenFile(path);
  if (!tokens.ok()) return tokens.status();
  t->tokens_ = *std::move(tokens);
  t->next_check_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  return t;
}

absl::Status BearerTokens::ReloadLocked() const {
  // Remembered either way: the periodic check then waits for the next change of the file
  // instead of reporting a bad one again every second.
  mtime_ns_ = ModTimeNs(path_);
  auto tokens = ReadTokenFile(path_);
  if (!tokens.ok()) {
    LOG(WARNING) << "keeping the previous " << tokens_.size()
                 << " bearer tokens: " << tokens.status();
    return tokens.status();
  }
  tokens_ = *std::move(tokens);
  LOG(INFO) << "reloaded " << tokens_.size() << " bearer tokens from " << path_;
  return absl::OkStatus();
}

void BearerTokens::MaybeReloadLocked() const {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return;
  next_check_ = now + std::chrono::seconds(1);
  if (ModTimeNs(path_) == mtime_ns_) return;
  ReloadLocked().IgnoreError();  // logged; a bad file keeps the previous tokens
}

absl::Status BearerTokens::Reload() {
  std::lock_guard<std::mutex> lock(mu_);
  return ReloadLocked();
}

absl::Status BearerTokens::Check(absl::string_view authorization) const {
  return Identify(authorization).status();
}

absl::StatusOr<std::string> BearerTokens::Identify(absl::string_view authorization) const {
  authorization = absl::StripAsciiWhitespace(authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(authorization, kScheme)) {
    return absl::UnauthenticatedError(
        "missing credentials: send the header 'authorization: Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  std::lock_guard<std::mutex> lock(mu_);
  MaybeReloadLocked();
  const TokenEntry* found = nullptr;
  for (const TokenEntry& t : tokens_) {
    if (ConstantTimeEquals(token, t.token)) found = &t;
  }
  if (found == nullptr) return absl::PermissionDeniedError("the bearer token is not valid");
  return found->client;
}

size_t BearerTokens::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_.size();
}

namespace {

class TokenAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  TokenAuthProcessor(std::shared_ptr<const BearerTokens> tokens, std::vector<std::string> prefixes)
      : tokens_(std::move(tokens)), prefixes_(std::move(prefixes)) {}

  bool IsBlocking() const override { return false; }  // a few string compares

  grpc::Status Process(const InputMetadata& md, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    auto path = md.find(":path");
    // Without a path (never seen in practice) every method needs a token: fail closed.
    if (path != md.end()) {
      const absl::string_view p(path->second.data(), path->second.size());
      bool covered = false;
      for (const std::string& prefix : prefixes_) covered |= absl::StartsWith(p, prefix);
      if (!covered) return grpc::Status::OK;
    }
    auto auth = md.find("authorization");
    const absl::string_view value =
        auth == md.end() ? absl::string_view()
                         : absl::string_view(auth->second.data(), auth->second.size());
    return proto::ToGrpcStatus(tokens_->Check(value));
  }

 private:
  std::shared_ptr<const BearerTokens> tokens_;
  std::vector<std::string> prefixes_;
};

}  // namespace

std::shared_ptr<grpc::AuthMetadataProcessor> MakeTokenAuthProcessor(
    std::shared_ptr<const BearerTokens> tokens, std::vector<std::string> path_prefixes) {
  return std::make_shared<TokenAuthProcessor>(std::move(tokens), std::move(path_prefixes));
}

}  // namespace hipserve::coordinator
