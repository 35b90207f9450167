// Communicator: typed collectives between the ranks of one tensor-parallel group.
//
// Every call takes (buffer, count, dtype, stream), as NCCL's do: buffers are host memory for
// CPU implementations (stream ignored, null) and device memory for NCCL (stream: the caller's
// cudaStream_t, the collective is ordered after the work already queued there), so a backend
// never converts its activations to call one. Every rank calls the same sequence of collectives
// with the same sizes and dtypes (lock-step). Implementations time out rather than hang on a
// dead peer. Not thread-safe: one caller thread per communicator.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "kernels/dtype/dtype.h"

namespace hipserve::worker {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // data[i] = sum over ranks of data[i] (`count` elements of `dtype`, in place).
  virtual absl::Status AllReduceSum(void* data, int64_t count, kernels::DType dtype,
                                    void* stream) = 0;
  // out[r * count + i] = in_of_rank_r[i]; out holds world_size * count elements.
  virtual absl::Status AllGather(const void* in, int64_t count, kernels::DType dtype, void* out,
                                 void* stream) = 0;
  // Copies root's data to every rank.
  virtual absl::Status Broadcast(void* data, int64_t count, kernels::DType dtype, int root,
                                 void* stream) = 0;
  virtual absl::Status Barrier() = 0;
};

// World of one: collectives are identities (AllGather must be in place: in == out, since the
// buffers may be device memory this class cannot copy).
std::unique_ptr<Communicator> MakeLocalCommunicator();

}  // namespace hipserve::worker
