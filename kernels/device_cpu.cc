// CPU build: there is no CUDA runtime linked, so there are never devices.
#include "kernels/device.h"

namespace hipserve::kernels {

int CudaDeviceCount() { return 0; }

}  // namespace hipserve::kernels
