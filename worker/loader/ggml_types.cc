#include "worker/loader/ggml_types.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace hipserve::worker::loader {
namespace {

constexpr int64_t kQK = 32;     // elements per block of the *_0 / *_1 types
constexpr int64_t kQK_K = 256;  // elements per super-block of the k-quants

struct TypeEntry {
  uint32_t id;
  GgmlTypeInfo info;
};

// Block sizes from ggml-common.h (static_asserts there document each struct's size).
constexpr TypeEntry kTypes[] = {
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", kQK, 18, true}},
    {3, {"Q4_1", kQK, 20, true}},
    {6, {"Q5_0", kQK, 22, false}},
    {7, {"Q5_1", kQK, 24, false}},
    {8, {"Q8_0", kQK, 34, true}},
    {9, {"Q8_1", kQK, 36, false}},
    {10, {"Q2_K", kQK_K, 84, false}},
    {11, {"Q3_K", kQK_K, 110, false}},
    {12, {"Q4_K", kQK_K, 144, false}},
    {13, {"Q5_K", kQK_K, 176, false}},
    {14, {"Q6_K", kQK_K, 210, true}},
    {15, {"Q8_K", kQK_K, 292, false}},
    {16, {"IQ2_XXS", kQK_K, 66, false}},
    {17, {"IQ2_XS", kQK_K, 74, false}},
    {18, {"IQ3_XXS", kQK_K, 98, false}},
    {19, {"IQ1_S", kQK_K, 50, false}},
    {20, {"IQ4_NL", kQK, 18, false}},
    {21, {"IQ3_S", kQK_K, 110, false}},
    {22, {"IQ2_S", kQK_K, 82, false}},
    {23, {"IQ4_XS", kQK_K, 136, false}},
    {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},
    {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},
    {29, {"IQ1_M", kQK_K, 56, false}},
    {30, {"BF16", 1, 2, true}},
    {34, {"TQ1_0", kQK_K, 54, false}},
    {35, {"TQ2_0", kQK_K, 66, false}},
};

inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void DequantQ4_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t b = 0; b < nb; ++b, src += 18, y += kQK) {
    const float d = HalfToFloat(LoadU16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t b = 0; b < nb; ++b, src += 20, y += kQK) {
    const float d = HalfToFloat(LoadU16(src));
    const float m = HalfToFloat(LoadU16(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

void DequantQ8_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t b = 0; b < nb; ++b, src += 34, y += kQK) {
    const float d = HalfToFloat(LoadU16(src));
    const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(qs[j]) * d;
  }
}

// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d; }: 6-bit quants (low 4
// bits in ql, high 2 in qh), 16 sub-blocks of 16 with an 8-bit scale each.
void DequantQ6_K(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t b = 0; b < nb; ++b, src += 210) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = HalfToFloat(LoadU16(src + 208));
    for (int n = 0; n < kQK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

const GgmlTypeInfo* FindGgmlType(uint32_t type_id) {
  for (const TypeEntry& e : kTypes) {
    if (e.id == type_id) return &e.info;
  }
  return nullptr;
}

std::string GgmlTypeName(uint32_t type_id) {
  const GgmlTypeInfo* t = FindGgmlType(type_id);
  return t != nullptr ? std::string(t->name) : absl::StrCat("type#", type_id);
}

std::string SupportedGgmlTypes() {
  std::string out;
  for (const TypeEntry& e : kTypes) {
    if (!e.info.dequantizable) continue;
    if (!out.empty()) out += ", ";
    out += e.info.name;
  }
  return out;
}

absl::StatusOr<int64_t> GgmlBytes(uint32_t type_id, int64_t n) {
  const GgmlTypeInfo* t = FindGgmlType(type_id);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown ggml type ", type_id));
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("negative element count ", n));
  if (n % t->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " elements is not a multiple of the ",
                                                   t->name, " block size ", t->block_size));
  }
  const int64_t blocks = n / t->block_size;
  if (blocks > std::numeric_limits<int64_t>::max() / t->type_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " elements of ", t->name, " overflow a 64-bit byte count"));
  }
  return blocks * t->type_size;
}

absl::Status DequantizeGgml(uint32_t type_id, const uint8_t* src, size_t src_bytes, int64_t n,
                            float* dst) {
  const GgmlTypeInfo* t = FindGgmlType(type_id);
  if (t == nullptr || !t->dequantizable) {
    return absl::UnimplementedError(absl::StrCat("cannot dequantise ggml type ",
                                                 GgmlTypeName(type_id),
                                                 "; supported: ", SupportedGgmlTypes()));
  }
  auto bytes = GgmlBytes(type_id, n);
  if (!bytes.ok()) return bytes.status();
  if (static_cast<uint64_t>(*bytes) != src_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " elements of ", t->name, " need ", *bytes, " bytes, got ", src_bytes));
  }
  if (n == 0) return absl::OkStatus();  // dst may be null for an empty tensor
  const int64_t nb = n / t->block_size;
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::kF32:
      std::memcpy(dst, src, src_bytes);
      return absl::OkStatus();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(LoadU16(src + 2 * i));
      return absl::OkStatus();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(LoadU16(src + 2 * i));
      return absl::OkStatus();
    case GgmlType::kQ4_0:
      DequantQ4_0(src, nb, dst);
      return absl::OkStatus();
    case GgmlType::kQ4_1:
      DequantQ4_1(src, nb, dst);
      return absl::OkStatus();
    case GgmlType::kQ8_0:
      DequantQ8_0(src, nb, dst);
      return absl::OkStatus();
    case GgmlType::kQ6_K:
      DequantQ6_K(src, nb, dst);
      return absl::OkStatus();
    default:
      // Unreachable: `dequantizable` in kTypes lists exactly the cases above.
      return absl::InternalError(absl::StrCat("no decoder for ", t->name));
  }
}

}  // namespace hipserve::worker::loader
