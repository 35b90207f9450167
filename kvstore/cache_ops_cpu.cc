#include "kvstore/cache_ops.h"

namespace hipserve::kvstore {

absl::Status CacheFillCuda(const CacheFillParams& p, void* stream) {
  return absl::UnimplementedError("CacheFillCuda: built without CUDA (HIPSERVE_CUDA=OFF)");
}

absl::Status CacheGatherCuda(const CacheGatherParams& p, void* stream) {
  return absl::UnimplementedError("CacheGatherCuda: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kvstore
