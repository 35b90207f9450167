#include "coordinator/auth.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

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

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", path));
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    const std::string t(absl::StripAsciiWhitespace(line));
    if (t.empty() || t[0] == '#') continue;
    tokens.push_back(t);
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

void BearerTokens::MaybeReload() const {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return;
  next_check_ = now + std::chrono::seconds(1);
  const int64_t mtime = ModTimeNs(path_);
  if (mtime == mtime_ns_) return;
  auto tokens = ReadTokenFile(path_);
  if (!tokens.ok()) {
    LOG(WARNING) << "keeping the previous bearer tokens: " << tokens.status();
    return;
  }
  tokens_ = *std::move(tokens);
  mtime_ns_ = mtime;
  LOG(INFO) << "reloaded " << tokens_.size() << " bearer tokens from " << path_;
}

absl::Status BearerTokens::Check(absl::string_view authorization) const {
  authorization = absl::StripAsciiWhitespace(authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(authorization, kScheme)) {
    return absl::UnauthenticatedError(
        "missing credentials: send the header 'authorization: Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  std::lock_guard<std::mutex> lock(mu_);
  MaybeReload();
  bool found = false;
  for (const std::string& t : tokens_) found |= ConstantTimeEquals(token, t);
  if (!found) return absl::PermissionDeniedError("the bearer token is not valid");
  return absl::OkStatus();
}

size_t BearerTokens::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_.size();
}

}  // namespace hipserve::coordinator
