// Which CUDA devices this process can see.
#pragma once

namespace hipserve::kernels {

// Number of visible CUDA devices. 0 on CPU builds (HIPSERVE_CUDA=OFF) and when the driver or
// device is missing or broken; never fails hard. Safe to call from any thread.
int CudaDeviceCount();

}  // namespace hipserve::kernels
