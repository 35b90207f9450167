// DecodeChunkScalar: dense_decode_chunk.inc compiled with this file's flags (see
// kernels/CMakeLists.txt and dense_decode_chunk.h).
#include <cstdint>

#include "kernels/attention/dense_decode_chunk.h"

#define HIPSERVE_DECODE_CHUNK_FN DecodeChunkScalar
#include "kernels/attention/dense_decode_chunk.inc"

#if !defined(__x86_64__)
// Other architectures build no vector variants (kernels/CMakeLists.txt); BestCpuIsa() never
// picks them there, these only satisfy the linker.
namespace hipserve::kernels::decode_internal {
void DecodeChunkAvx2(const DecodeChunkArgs& a, int t0, int t1, float* s, float* m, float* l,
                     float* o) {
  DecodeChunkScalar(a, t0, t1, s, m, l, o);
}
void DecodeChunkAvx512(const DecodeChunkArgs& a, int t0, int t1, float* s, float* m, float* l,
                       float* o) {
  DecodeChunkScalar(a, t0, t1, s, m, l, o);
}
}  // namespace hipserve::kernels::decode_internal
#endif
