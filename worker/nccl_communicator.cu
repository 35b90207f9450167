#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kernels/cuda/cuda_check.h"
#include "worker/nccl_communicator.h"

namespace hipserve::worker {

namespace {

using kernels::DType;

absl::Status NcclErrorToStatus(ncclResult_t r, const char* expr, int rank, const char* file,
                               int line) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  const absl::StatusCode code =
      r == ncclInvalidArgument || r == ncclInvalidUsage ? absl::StatusCode::kInvalidArgument
      : r == ncclRemoteError || r == ncclSystemError    ? absl::StatusCode::kUnavailable
                                                        : absl::StatusCode::kInternal;
  return absl::Status(
      code, absl::StrCat(expr, " failed: ", ncclGetErrorString(r), " (", ncclGetLastError(nullptr),
                         ") on rank ", rank, ", device ", device, " at ", file, ":", line));
}

// ncclInProgress is not an error for a non-blocking communicator: the caller polls.
#define NCCL_RETURN_IF_ERROR(expr, rank)                                           \
  do {                                                                             \
    const ncclResult_t _hipserve_nccl_r = (expr);                                  \
    if (_hipserve_nccl_r != ncclSuccess && _hipserve_nccl_r != ncclInProgress) {   \
      return NcclErrorToStatus(_hipserve_nccl_r, #expr, rank, __FILE__, __LINE__); \
    }                                                                              \
  } while (0)

absl::StatusOr<ncclDataType_t> NcclType(DType d, bool reduce) {
  switch (d) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kBf16:
      return ncclBfloat16;
    case DType::kInt32:
      return ncclInt32;
    case DType::kFp8E5m2:
      if (!reduce) return ncclUint8;  // moved as bytes
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "NCCL ", reduce ? "all-reduce" : "collective", " does not support dtype ",
      kernels::DTypeName(d), "; supported: fp32, bf16, int32", reduce ? "" : ", fp8_e5m2"));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclOptions& o, ncclComm_t comm, cudaEvent_t event,
                   cudaStream_t own_stream, int* barrier_buf)
      : options_(o),
        comm_(comm),
        event_(event),
        own_stream_(own_stream),
        barrier_buf_(barrier_buf) {}

  ~NcclCommunicator() override {
    cudaSetDevice(options_.device);
    if (comm_ != nullptr) {
      if (broken_.ok()) {
        ncclCommFinalize(comm_);
        WaitIdle(absl::Seconds(10)).IgnoreError();
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (event_ != nullptr) cudaEventDestroy(event_);
    if (own_stream_ != nullptr) cudaStreamDestroy(own_stream_);
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
  }

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }

  absl::Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) override {
    if (!broken_.ok()) return broken_;
    auto type = NcclType(dtype, /*reduce=*/true);
    if (!type.ok()) return type.status();
    if (count == 0) return absl::OkStatus();
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    NCCL_RETURN_IF_ERROR(
        ncclAllReduce(data, data, static_cast<size_t>(count), *type, ncclSum, comm_, s), rank());
    return Complete("all-reduce", count, dtype, s);
  }

  absl::Status AllGather(const void* in, int64_t count, DType dtype, void* out,
                         void* stream) override {
    if (!broken_.ok()) return broken_;
    auto type = NcclType(dtype, /*reduce=*/false);
    if (!type.ok()) return type.status();
    if (count == 0) return absl::OkStatus();
    const size_t n = static_cast<size_t>(count);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    NCCL_RETURN_IF_ERROR(ncclAllGather(in, out, n, *type, comm_, s), rank());
    return Complete("all-gather", count, dtype, s);
  }

  absl::Status Broadcast(void* data, int64_t count, DType dtype, int root, void* stream) override {
    if (!broken_.ok()) return broken_;
    if (root < 0 || root >= world_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " outside world of ", world_size()));
    }
    auto type = NcclType(dtype, /*reduce=*/false);
    if (!type.ok()) return type.status();
    if (count == 0) return absl::OkStatus();
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    NCCL_RETURN_IF_ERROR(
        ncclBroadcast(data, data, static_cast<size_t>(count), *type, root, comm_, s), rank());
    return Complete("broadcast", count, dtype, s);
  }

  absl::Status Barrier() override {
    if (!broken_.ok()) return broken_;
    NCCL_RETURN_IF_ERROR(
        ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, own_stream_),
        rank());
    return Complete("barrier", 1, DType::kInt32, own_stream_);
  }

 private:
  // Waits until the communicator finished its non-blocking enqueue.
  absl::Status WaitIdle(absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    for (;;) {
      ncclResult_t r = ncclSuccess;
      NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm_, &r), rank());
      if (r == ncclSuccess) return absl::OkStatus();
      if (r != ncclInProgress)
        return NcclErrorToStatus(r, "NCCL async", rank(), __FILE__, __LINE__);
      if (absl::Now() > end) return absl::DeadlineExceededError("NCCL operation in progress");
      std::this_thread::yield();
    }
  }

  // Waits for the collective just queued on `s` (unless `s` is capturing a graph).
  absl::Status Complete(const char* op, int64_t count, DType dtype, cudaStream_t s) {
    const std::string head =
        absl::StrCat("NCCL ", op, " of ", count, " ", kernels::DTypeName(dtype), " on rank ",
                     rank(), " of ", world_size(), " (device ", options_.device, ")");
    absl::Status st = WaitIdle(options_.timeout);
    if (!st.ok()) return Break(absl::StrCat(head, ": ", st.message()), st.code());
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(s, &capture));
    if (capture != cudaStreamCaptureStatusNone) return absl::OkStatus();
    CUDA_RETURN_IF_ERROR(cudaEventRecord(event_, s));
    const absl::Time end = absl::Now() + options_.timeout;
    int spins = 0;
    for (;;) {
      const cudaError_t q = cudaEventQuery(event_);
      if (q == cudaSuccess) return absl::OkStatus();
      if (q != cudaErrorNotReady) CUDA_RETURN_IF_ERROR(q);
      ncclResult_t r = ncclSuccess;
      ncclCommGetAsyncError(comm_, &r);
      if (r != ncclSuccess && r != ncclInProgress) {
        return Break(absl::StrCat(head, " failed (a peer rank is gone): ", ncclGetErrorString(r)),
                     absl::StatusCode::kUnavailable);
      }
      if (absl::Now() > end) {
        return Break(
            absl::StrCat(head, ": not complete within ", absl::FormatDuration(options_.timeout),
                         " (a peer rank died or stalled)"),
            absl::StatusCode::kDeadlineExceeded);
      }
      if (++spins > 1000) std::this_thread::yield();
    }
  }

  absl::Status Break(const std::string& message, absl::StatusCode code) {
    broken_.Update(absl::Status(code, message));
    LOG(ERROR) << broken_ << "; aborting the NCCL communicator";
    ncclCommAbort(comm_);
    comm_ = nullptr;
    return broken_;
  }

  NcclOptions options_;
  ncclComm_t comm_;
  cudaEvent_t event_;
  cudaStream_t own_stream_;
  int* barrier_buf_;
  absl::Status broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(
    const NcclOptions& o, std::shared_ptr<RendezvousStore> store) {
  if (o.world_size <= 0 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL rank ", o.rank, " outside world of ", o.world_size));
  }
  if (store == nullptr) return absl::InvalidArgumentError("NCCL needs a rendezvous store");
  SetNcclEnvironmentDefaults();
  const absl::Time start = absl::Now();
  CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
  ncclUniqueId id;
  if (o.rank == 0) {
    NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id), o.rank);
    absl::Status s =
        store->Set("nccl_id", std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
    if (!s.ok()) return s;
  } else {
    absl::StatusOr<std::string> v = store->Get("nccl_id", o.rendezvous_timeout);
    if (!v.ok()) return v.status();
    if (v->size() != sizeof(id)) {
      return absl::InternalError(absl::StrCat("NCCL unique id from rank 0 has ", v->size(),
                                              " bytes, expected ", sizeof(id)));
    }
    std::memcpy(&id, v->data(), sizeof(id));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  NCCL_RETURN_IF_ERROR(ncclCommInitRankConfig(&comm, o.world_size, id, o.rank, &config), o.rank);
  const absl::Time end = absl::Now() + o.rendezvous_timeout;
  for (;;) {
    ncclResult_t r = ncclSuccess;
    ncclCommGetAsyncError(comm, &r);
    if (r == ncclSuccess) break;
    if (r != ncclInProgress || absl::Now() > end) {
      ncclCommAbort(comm);
      if (r != ncclInProgress) {
        return NcclErrorToStatus(r, "ncclCommInitRankConfig", o.rank, __FILE__, __LINE__);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "NCCL rank ", o.rank, " of ", o.world_size, ": communicator not initialized within ",
          absl::FormatDuration(o.rendezvous_timeout), " (a peer rank did not join)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  cudaEvent_t event = nullptr;
  cudaStream_t stream = nullptr;
  int* barrier = nullptr;
  cudaError_t e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaMalloc(&barrier, sizeof(int));
  if (e == cudaSuccess) e = cudaMemset(barrier, 0, sizeof(int));
  auto result = std::make_unique<NcclCommunicator>(o, comm, event, stream, barrier);
  CUDA_RETURN_IF_ERROR(e);
  LOG(INFO) << "NCCL rank " << o.rank << " of " << o.world_size << " on device " << o.device
            << " ready in " << absl::FormatDuration(absl::Now() - start)
            << " (NCCL_NVLS_ENABLE=" << (std::getenv("NCCL_NVLS_ENABLE") ?: "") << ")";
  return std::unique_ptr<Communicator>(std::move(result));
}

void SetNcclEnvironmentDefaults() { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); }

bool NcclAvailable() { return true; }

}  // namespace hipserve::worker
