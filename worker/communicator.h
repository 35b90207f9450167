// Communicator: collectives between the ranks of one tensor-parallel group.
//
// Every rank calls the same sequence of collectives with the same sizes (lock-step). Buffers
// are host memory for CPU implementations and device memory for NCCL. Not thread-safe: one
// caller thread per communicator.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"

namespace hipserve::worker {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // data[i] = sum over ranks of data[i].
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // out[r * count + i] = in_of_rank_r[i]; out holds world_size * count floats.
  virtual absl::Status AllGather(const float* in, int64_t count, float* out) = 0;
  // Copies root's data to every rank.
  virtual absl::Status Broadcast(float* data, int64_t count, int root) = 0;
  virtual absl::Status Barrier() = 0;
};

// World of one: collectives are identities.
std::unique_ptr<Communicator> MakeLocalCommunicator();

}  // namespace hipserve::worker
