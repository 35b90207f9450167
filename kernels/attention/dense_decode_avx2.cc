// DecodeChunkAvx2: dense_decode_chunk.inc compiled with this file's flags (see
// kernels/CMakeLists.txt and dense_decode_chunk.h).
#include <immintrin.h>

#include <cstdint>

#include "kernels/attention/dense_decode_chunk.h"

#define HIPSERVE_DECODE_CHUNK_FN DecodeChunkAvx2
#include "kernels/attention/dense_decode_chunk.inc"
