#include <cuda_runtime.h>

#include "kernels/device.h"

namespace hipserve::kernels {

int CudaDeviceCount() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver / no device / insufficient driver: report none and clear the sticky-free error
    // so later unrelated runtime calls don't see it.
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace hipserve::kernels
