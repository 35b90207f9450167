#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kvstore/cache_ops.h"
#include "kvstore/fp8_e5m2.h"

namespace hipserve::kvstore {
namespace {

absl::Status CheckShape(int64_t n, int head_dim, const void* rows, const void* src) {
  if (n < 0 || head_dim <= 0 || head_dim % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache op: n=", n, " head_dim=", head_dim, " (needs a multiple of 16)"));
  }
  if (n > 0 && (rows == nullptr || src == nullptr)) {
    return absl::InvalidArgumentError("cache op: null index arrays");
  }
  return absl::OkStatus();
}

// One fp8 row -> one bank row.
void StoreRow(const uint8_t* src, void* bank, KvDtype dtype, int64_t row, int head_dim) {
  switch (dtype) {
    case KvDtype::kFp8E5m2:
      std::memcpy(static_cast<uint8_t*>(bank) + row * head_dim, src, head_dim);
      return;
    case KvDtype::kBf16: {
      uint16_t* dst = static_cast<uint16_t*>(bank) + row * head_dim;
      for (int i = 0; i < head_dim; ++i) dst[i] = Fp8E5m2ToBf16(src[i]);
      return;
    }
  }
}

void LoadBankRow(const void* bank, KvDtype dtype, int64_t row, int head_dim, uint16_t* out) {
  switch (dtype) {
    case KvDtype::kFp8E5m2: {
      const uint8_t* src = static_cast<const uint8_t*>(bank) + row * head_dim;
      for (int i = 0; i < head_dim; ++i) out[i] = Fp8E5m2ToBf16(src[i]);
      return;
    }
    case KvDtype::kBf16:
      std::memcpy(out, static_cast<const uint16_t*>(bank) + row * head_dim, head_dim * 2);
      return;
  }
}

}  // namespace

void SortFillBySource(std::vector<int32_t>* rows, std::vector<uint64_t>* src) {
  std::vector<size_t> order(src->size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (*src)[a] < (*src)[b]; });
  std::vector<int32_t> r(rows->size());
  std::vector<uint64_t> s(src->size());
  for (size_t i = 0; i < order.size(); ++i) {
    r[i] = (*rows)[order[i]];
    s[i] = (*src)[order[i]];
  }
  rows->swap(r);
  src->swap(s);
}

absl::Status CacheFillHost(const CacheFillParams& p) {
  absl::Status s = CheckShape(p.n, p.head_dim, p.rows, p.src);
  if (!s.ok()) return s;
  for (int64_t i = 0; i < p.n; ++i) {
    const uint8_t* k = reinterpret_cast<const uint8_t*>(p.src[i]);
    StoreRow(k, p.bank_k, p.bank_dtype, p.rows[i], p.head_dim);
    if (p.bank_v != nullptr) {
      StoreRow(k + p.v_offset_bytes, p.bank_v, p.bank_dtype, p.rows[i], p.head_dim);
    }
  }
  return absl::OkStatus();
}

absl::Status CacheGatherHost(const CacheGatherParams& p) {
  absl::Status s = CheckShape(p.n, p.head_dim, p.rows, p.src);
  if (!s.ok()) return s;
  if (p.out_v != nullptr && p.bank_v == nullptr) {
    return absl::InvalidArgumentError("CacheGatherHost: out_v needs bank_v");
  }
  for (int64_t i = 0; i < p.n; ++i) {
    uint16_t* ok = p.out_k + i * p.head_dim;
    uint16_t* ov = p.out_v == nullptr ? nullptr : p.out_v + i * p.head_dim;
    if (p.rows[i] >= 0) {
      LoadBankRow(p.bank_k, p.bank_dtype, p.rows[i], p.head_dim, ok);
      if (ov != nullptr) LoadBankRow(p.bank_v, p.bank_dtype, p.rows[i], p.head_dim, ov);
    } else {
      const uint8_t* k = reinterpret_cast<const uint8_t*>(p.src[i]);
      for (int j = 0; j < p.head_dim; ++j) ok[j] = Fp8E5m2ToBf16(k[j]);
      if (ov != nullptr) {
        for (int j = 0; j < p.head_dim; ++j) ov[j] = Fp8E5m2ToBf16(k[p.v_offset_bytes + j]);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kvstore
