// NcclCommunicator: the GPU Communicator, NCCL collectives on the caller's CUDA stream.
//
// Bootstrap: rank 0 creates the NCCL unique id and publishes it in the RendezvousStore (in a
// worker: the coordinator's control plane, under the configuration's prefix); the other ranks
// read it and all call ncclCommInitRankConfig (non-blocking, polled against
// `rendezvous_timeout`). Buffers are device memory; `stream` is the caller's cudaStream_t (the
// collective runs after the work already queued there). dtypes: fp32, bf16, int32 (sums);
// fp8 e5m2 for all-gather and broadcast only.
// Timeouts: after queueing a collective the call waits (polling an event and
// ncclCommGetAsyncError) until it completed or `timeout` passed; then the communicator is
// aborted (ncclCommAbort) and every later call fails. While the stream is being captured
// into a CUDA graph the call does not wait (the graph launch is the caller's to time).
// Built from nccl_communicator.cu with HIPSERVE_CUDA; a CPU-only build links
// nccl_communicator_cpu.cc, whose factory returns Unimplemented.
// Thread-safety: one caller thread. Owns the NCCL communicator and its event.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/communicator.h"
#include "worker/rendezvous.h"

namespace hipserve::worker {

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;                               // CUDA device ordinal (the forward backend's)
  absl::Duration timeout = absl::Seconds(300);  // one collective
  absl::Duration rendezvous_timeout = absl::Seconds(300);  // unique id + communicator init
};

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(
    const NcclOptions& options, std::shared_ptr<RendezvousStore> store);

// Sets NCCL_NVLS_ENABLE=0 unless the user set it (NVLink multicast stays off: it needs
// fabric-manager multicast support that the lent machines lack). Call before any NCCL
// communicator is created; the worker does at startup.
void SetNcclEnvironmentDefaults();

// Whether this build has NCCL (false in the CPU stub).
bool NcclAvailable();

}  // namespace hipserve::worker
