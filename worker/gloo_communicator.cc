#include "worker/gloo_communicator.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "kernels/dtype/bf16.h"

namespace hipserve::worker {

namespace {

using kernels::DType;

// Gloo's Store interface over a RendezvousStore. Gloo expects exceptions on failure; they end
// connectFullMesh, and MakeGlooCommunicator turns them into a Status.
class GlooStore final : public gloo::rendezvous::Store {
 public:
  GlooStore(std::shared_ptr<RendezvousStore> store, absl::Duration timeout)
      : store_(std::move(store)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status s = store_->Set(key, std::string(data.begin(), data.end()));
    if (!s.ok()) throw gloo::IoException(s.ToString());
  }
  // What connectFullMesh fetched for `key` ("" when it did not).
  std::string cached(const std::string& key) const {
    auto it = cache_.find(key);
    return it == cache_.end() ? "" : it->second;
  }
  std::vector<char> get(const std::string& key) override {
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      Fetch(key, timeout_);
      it = cache_.find(key);
    }
    return std::vector<char>(it->second.begin(), it->second.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, kNoTimeout); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    const absl::Duration t =
        timeout == kNoTimeout ? timeout_ : std::min(timeout_, absl::FromChrono(timeout));
    for (const std::string& k : keys) {
      if (cache_.count(k) == 0) Fetch(k, t);
    }
  }

 private:
  static constexpr std::chrono::milliseconds kNoTimeout{0};
  void Fetch(const std::string& key, absl::Duration timeout) {
    absl::StatusOr<std::string> v = store_->Get(key, timeout);
    if (!v.ok()) throw gloo::IoException(v.status().ToString());
    cache_[key] = *std::move(v);
  }
  std::shared_ptr<RendezvousStore> store_;
  absl::Duration timeout_;
  std::map<std::string, std::string> cache_;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const GlooOptions& o, std::shared_ptr<gloo::transport::Device> device,
                   std::shared_ptr<gloo::rendezvous::Context> context,
                   std::vector<std::string> peer_devices)
      : options_(o),
        device_(std::move(device)),
        context_(std::move(context)),
        peer_devices_(std::move(peer_devices)) {}

  ~GlooCommunicator() override {
    // The context (pairs) must go before the device that runs their event loop.
    context_.reset();
    device_.reset();
  }

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }

  absl::Status AllReduceSum(void* data, int64_t count, DType dtype, void*) override {
    if (absl::Status s = Check("all-reduce", count, dtype); !s.ok()) return s;
    if (count == 0 || world_size() == 1) return absl::OkStatus();
    switch (dtype) {
      case DType::kFloat32:
        return Run("all-reduce", count, dtype,
                   [&] { ReduceTyped<float>(static_cast<float*>(data), count); });
      case DType::kInt32:
        return Run("all-reduce", count, dtype,
                   [&] { ReduceTyped<int32_t>(static_cast<int32_t*>(data), count); });
      case DType::kBf16: {
        // Sum in fp32 (one rounding at the end, the same on every rank).
        scratch_.resize(static_cast<size_t>(count));
        uint16_t* bf = static_cast<uint16_t*>(data);
        kernels::Bf16ToFloatArray(bf, scratch_.data(), count);
        absl::Status s =
            Run("all-reduce", count, dtype, [&] { ReduceTyped<float>(scratch_.data(), count); });
        if (!s.ok()) return s;
        kernels::FloatToBf16Array(scratch_.data(), bf, count);
        return absl::OkStatus();
      }
      case DType::kFp8E5m2:
        break;
    }
    return Unsupported("all-reduce", dtype);
  }

  absl::Status AllGather(const void* in, int64_t count, DType dtype, void* out, void*) override {
    if (absl::Status s = Check("all-gather", count, dtype); !s.ok()) return s;
    const size_t bytes = static_cast<size_t>(count * kernels::DTypeSize(dtype));
    uint8_t* o = static_cast<uint8_t*>(out);
    const uint8_t* i = static_cast<const uint8_t*>(in);
    if (count == 0) return absl::OkStatus();
    if (world_size() == 1) {
      if (in != out) std::memmove(o, i, bytes);
      return absl::OkStatus();
    }
    // Gloo reads `in` while writing `out`: stage an input that overlaps the output.
    const uint8_t* src = i;
    if (i < o + bytes * world_size() && o < i + bytes) {
      staging_.assign(i, i + bytes);
      src = staging_.data();
    }
    return Run("all-gather", count, dtype, [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(const_cast<uint8_t*>(src), bytes);
      opts.setOutput(o, bytes * world_size());
      opts.setTag(NextTag());
      opts.setTimeout(Timeout());
      gloo::allgather(opts);
    });
  }

  absl::Status Broadcast(void* data, int64_t count, DType dtype, int root, void*) override {
    if (absl::Status s = Check("broadcast", count, dtype); !s.ok()) return s;
    if (root < 0 || root >= world_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " outside world of ", world_size()));
    }
    if (count == 0 || world_size() == 1) return absl::OkStatus();
    const size_t bytes = static_cast<size_t>(count * kernels::DTypeSize(dtype));
    return Run("broadcast", count, dtype, [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(data), bytes);
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(Timeout());
      gloo::broadcast(opts);
    });
  }

  absl::Status Barrier() override {
    if (!broken_.ok()) return broken_;
    if (world_size() == 1) return absl::OkStatus();
    return Run("barrier", 0, DType::kInt32, [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(Timeout());
      gloo::barrier(opts);
    });
  }

 private:
  template <typename T>
  void ReduceTyped(T* data, int64_t count) {
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data, static_cast<size_t>(count));
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
    opts.setTag(NextTag());
    opts.setTimeout(Timeout());
    gloo::allreduce(opts);
  }

  absl::Status Check(const char* op, int64_t count, DType dtype) const {
    if (!broken_.ok()) return broken_;
    if (count < 0) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": negative count ", count));
    }
    if (dtype == DType::kFp8E5m2) return Unsupported(op, dtype);
    return absl::OkStatus();
  }

  absl::Status Unsupported(const char* op, DType dtype) const {
    return absl::InvalidArgumentError(absl::StrCat("Gloo ", op, " does not support dtype ",
                                                   kernels::DTypeName(dtype),
                                                   "; supported: fp32, bf16, int32"));
  }

  std::chrono::milliseconds Timeout() const {
    return std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.timeout));
  }
  uint32_t NextTag() { return next_tag_++; }

  // Runs one Gloo operation; a Gloo exception breaks the communicator for good.
  template <typename Fn>
  absl::Status Run(const char* op, int64_t count, DType dtype, Fn&& fn) {
    const absl::Time start = absl::Now();
    try {
      fn();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      const absl::Duration took = absl::Now() - start;
      const std::string what = e.what();
      std::string peer;
      for (int r = 0; r < world_size(); ++r) {
        if (r != rank() && !peer_devices_[r].empty() &&
            what.find(peer_devices_[r]) != std::string::npos) {
          peer = absl::StrCat(" (peer rank ", r, " at ", peer_devices_[r], ")");
        }
      }
      if (peer.empty() && world_size() == 2) {
        peer = absl::StrCat(" (peer rank ", 1 - rank(), ")");  // the only peer
      }
      const std::string head =
          absl::StrCat("Gloo ", op, " of ", count, " ", kernels::DTypeName(dtype), " on rank ",
                       rank(), " of ", world_size(), peer);
      if (took >= options_.timeout || what.find("imed out") != std::string::npos) {
        broken_ = absl::DeadlineExceededError(
            absl::StrCat(head, ": no answer within ", absl::FormatDuration(options_.timeout),
                         " (a peer rank died or stalled): ", what));
      } else {
        broken_ =
            absl::UnavailableError(absl::StrCat(head, " failed (a peer rank is gone): ", what));
      }
      LOG(ERROR) << broken_;
      return broken_;
    }
  }

  GlooOptions options_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::vector<std::string> peer_devices_;  // rank -> its TCP device address, for messages
  uint32_t next_tag_ = 0;
  absl::Status broken_;
  std::vector<float> scratch_;
  std::vector<uint8_t> staging_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(
    const GlooOptions& o, std::shared_ptr<RendezvousStore> store) {
  if (o.world_size <= 0 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gloo rank ", o.rank, " outside world of ", o.world_size));
  }
  if (store == nullptr) return absl::InvalidArgumentError("Gloo needs a rendezvous store");
  const absl::Time start = absl::Now();
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = o.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.world_size);
    context->setTimeout(std::chrono::milliseconds(absl::ToInt64Milliseconds(o.rendezvous_timeout)));
    GlooStore gstore(store, o.rendezvous_timeout);
    context->connectFullMesh(gstore, device);
    // Each peer's listening address ("[ip]:port"), only to name the peer in error messages:
    // rank r's key holds its pair addresses, which share its device's listener.
    std::vector<std::string> peers(o.world_size);
    for (int r = 0; r < o.world_size && o.world_size > 1; ++r) {
      const std::string all = gstore.cached(std::to_string(r));
      const size_t each = all.size() / (o.world_size - 1);
      if (r == o.rank || each == 0) continue;
      std::string addr =
          gloo::transport::tcp::Address(std::vector<char>(all.begin(), all.begin() + each)).str();
      peers[r] = addr.substr(0, addr.find('$'));
    }
    context->setTimeout(std::chrono::milliseconds(absl::ToInt64Milliseconds(o.timeout)));
    LOG(INFO) << "Gloo rank " << o.rank << " of " << o.world_size << " connected to "
              << absl::StrJoin(peers, " ",
                               [](std::string* out, const std::string& p) {
                                 out->append(p.empty() ? "self" : p);
                               })
              << " in " << absl::FormatDuration(absl::Now() - start);
    return std::unique_ptr<Communicator>(
        new GlooCommunicator(o, std::move(device), std::move(context), std::move(peers)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "Gloo rank ", o.rank, " of ", o.world_size, " could not connect to its ", "peers on ",
        o.hostname, " after ", absl::FormatDuration(absl::Now() - start), ": ", e.what()));
  }
}

}  // namespace hipserve::worker
