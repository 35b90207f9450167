// CPU-only builds: no NCCL. The factory says so; the environment default is still applied so
// that a worker's behaviour does not depend on the build.
#include <cstdlib>

#include "worker/nccl_communicator.h"

namespace hipserve::worker {

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(
    const NcclOptions&, std::shared_ptr<RendezvousStore>) {
  return absl::UnimplementedError(
      "NCCL communicator: this hipserve was built without CUDA (HIPSERVE_CUDA=OFF)");
}

void SetNcclEnvironmentDefaults() { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); }

bool NcclAvailable() { return false; }

}  // namespace hipserve::worker
