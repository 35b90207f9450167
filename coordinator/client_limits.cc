#include "coordinator/client_limits.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hipserve::coordinator {

struct ClientLimits::State {
  std::mutex mu;
  absl::flat_hash_map<std::string, Usage> usage;  // clients with a lease only
};

ClientLimits::Lease::Lease(std::shared_ptr<State> state, std::string client, int64_t tokens)
    : state_(std::move(state)), client_(std::move(client)), tokens_(tokens) {}

void ClientLimits::Lease::Release() {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (released_) return;
  released_ = true;
  auto it = state_->usage.find(client_);
  if (it == state_->usage.end()) return;
  it->second.requests -= 1;
  it->second.tokens -= tokens_;
  if (it->second.requests <= 0) state_->usage.erase(it);
}

ClientLimits::ClientLimits(const ClientLimitOptions& options)
    : options_(options), state_(std::make_shared<State>()) {}

bool ClientLimits::enabled() const {
  return options_.max_concurrent_requests > 0 || options_.max_queued_tokens > 0;
}

absl::StatusOr<std::unique_ptr<ClientLimits::Lease>> ClientLimits::Acquire(
    const std::string& client, int64_t tokens) {
  std::lock_guard<std::mutex> lock(state_->mu);
  Usage& u = state_->usage[client];
  const Usage held = u;
  if (options_.max_concurrent_requests > 0 && held.requests >= options_.max_concurrent_requests) {
    if (held.requests == 0) state_->usage.erase(client);
    return absl::ResourceExhaustedError(absl::StrCat(
        "client '", client, "' has ", held.requests,
        " requests in flight, the limit per client (--max_concurrent_requests_per_client=",
        options_.max_concurrent_requests, "); retry when one finishes"));
  }
  if (options_.max_queued_tokens > 0 && held.tokens + tokens > options_.max_queued_tokens) {
    if (held.requests == 0) state_->usage.erase(client);
    return absl::ResourceExhaustedError(
        absl::StrCat("client '", client, "' would hold ", held.tokens + tokens,
                     " tokens in flight (prompt + max_tokens: ", held.tokens, " held by ",
                     held.requests, " requests + ", tokens,
                     " asked), over the limit per client "
                     "(--max_queued_tokens_per_client=",
                     options_.max_queued_tokens, ")",
                     tokens > options_.max_queued_tokens ? "; this request alone exceeds it" : ""));
  }
  u.requests += 1;
  u.tokens += tokens;
  return std::make_unique<Lease>(state_, client, tokens);
}

ClientLimits::Usage ClientLimits::usage(const std::string& client) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->usage.find(client);
  return it == state_->usage.end() ? Usage{} : it->second;
}

size_t ClientLimits::active_clients() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->usage.size();
}

namespace {

class LeasedSink final : public SequenceSink {
 public:
  LeasedSink(std::shared_ptr<SequenceSink> sink, std::unique_ptr<ClientLimits::Lease> lease)
      : sink_(std::move(sink)), lease_(std::move(lease)) {}
  void OnPrefillProgress(int processed, int total) override {
    sink_->OnPrefillProgress(processed, total);
  }
  void OnTokens(const std::vector<int32_t>& ids, const std::string& text,
                int completion_tokens) override {
    sink_->OnTokens(ids, text, completion_tokens);
  }
  void OnFinish(const FinishInfo& info) override {
    // Released first: a client that starts its next request as soon as it sees the end of
    // this one must not find it still counted.
    lease_->Release();
    sink_->OnFinish(info);
  }

 private:
  std::shared_ptr<SequenceSink> sink_;
  std::unique_ptr<ClientLimits::Lease> lease_;  // released at OnFinish or destruction
};

}  // namespace

std::shared_ptr<SequenceSink> WithLease(std::shared_ptr<SequenceSink> sink,
                                        std::unique_ptr<ClientLimits::Lease> lease) {
  return std::make_shared<LeasedSink>(std::move(sink), std::move(lease));
}

std::string PeerHost(absl::string_view peer) {
  absl::string_view rest;
  if (absl::StartsWith(peer, "ipv4:")) {
    rest = peer.substr(5);
    const size_t colon = rest.rfind(':');
    return std::string(colon == absl::string_view::npos ? rest : rest.substr(0, colon));
  }
  if (absl::StartsWith(peer, "ipv6:")) {
    rest = peer.substr(5);
    const size_t close = rest.rfind(']');
    if (!rest.empty() && rest[0] == '[' && close != absl::string_view::npos) {
      return std::string(rest.substr(1, close - 1));
    }
    return std::string(rest);
  }
  return std::string(peer);
}

}  // namespace hipserve::coordinator
