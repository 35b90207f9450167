#include "worker/rendezvous.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "hipserve/v1/worker.grpc.pb.h"
#include "proto/grpc_status.h"

namespace hipserve::worker {

namespace {

class MemoryStore final : public RendezvousStore {
 public:
  absl::Status Set(const std::string& key, const std::string& value) override {
    std::lock_guard<std::mutex> lock(mu_);
    values_[key] = value;
    cv_.notify_all();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const std::string& key, absl::Duration timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const bool found = cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                                    [&] { return values_.count(key) > 0; });
    if (!found) {
      return absl::DeadlineExceededError(absl::StrCat("rendezvous key '", key, "' not set within ",
                                                      absl::FormatDuration(timeout)));
    }
    return values_[key];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> values_;
};

class CoordinatorStore final : public RendezvousStore {
 public:
  CoordinatorStore(const std::string& coordinator, const std::string& prefix)
      : coordinator_(coordinator),
        prefix_(prefix),
        stub_(v1::control::Control::NewStub(
            grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()))) {}

  absl::Status Set(const std::string& key, const std::string& value) override {
    v1::control::StoreSetRequest req;
    req.set_key(prefix_ + key);
    req.set_value(value);
    v1::control::StoreSetResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = stub_->StoreSet(&ctx, req, &resp);
    if (!s.ok()) {
      absl::Status st = proto::FromGrpcStatus(s);
      return absl::Status(st.code(), absl::StrCat("rendezvous set '", req.key(), "' at ",
                                                  coordinator_, ": ", st.message()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Get(const std::string& key, absl::Duration timeout) override {
    v1::control::StoreGetRequest req;
    req.set_key(prefix_ + key);
    const absl::Time end = absl::Now() + timeout;
    int polls = 0;
    for (;;) {
      v1::control::StoreGetResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      grpc::Status s = stub_->StoreGet(&ctx, req, &resp);
      if (s.ok()) return resp.value();
      // NOT_FOUND: not set yet; UNAVAILABLE: the coordinator is briefly unreachable.
      if (s.error_code() != grpc::StatusCode::NOT_FOUND &&
          s.error_code() != grpc::StatusCode::UNAVAILABLE) {
        absl::Status st = proto::FromGrpcStatus(s);
        return absl::Status(st.code(), absl::StrCat("rendezvous get '", req.key(), "' at ",
                                                    coordinator_, ": ", st.message()));
      }
      if (absl::Now() > end) {
        return absl::DeadlineExceededError(absl::StrCat(
            "rendezvous key '", req.key(), "' not set at ", coordinator_, " within ",
            absl::FormatDuration(timeout), " (a peer rank did not join): ", s.error_message()));
      }
      ++polls;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5 * polls, 50)));
    }
  }

 private:
  std::string coordinator_;
  std::string prefix_;
  std::unique_ptr<v1::control::Control::Stub> stub_;
};

}  // namespace

std::shared_ptr<RendezvousStore> MakeMemoryStore() { return std::make_shared<MemoryStore>(); }

std::shared_ptr<RendezvousStore> MakeCoordinatorStore(const std::string& coordinator,
                                                      const std::string& prefix) {
  return std::make_shared<CoordinatorStore>(coordinator, prefix);
}

}  // namespace hipserve::worker
