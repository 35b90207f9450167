#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/hip/bsa.h"

namespace hipserve::kernels {
namespace {

constexpr int kTile = 64;  // keys per online-softmax rescale

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("Bsa: ", what));
}

absl::Status Validate(const BsaParams& p) {
  if (p.q == nullptr || p.q_pos == nullptr || p.q_plan_row == nullptr || p.k == nullptr ||
      p.v == nullptr || p.out == nullptr || p.rope == nullptr) {
    return Bad("q, q_pos, q_plan_row, k, v, out and rope must not be null");
  }
  if (p.num_q <= 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_kv <= 0 || p.head_dim <= 0 ||
      p.head_dim % 2 != 0 || p.num_heads % p.num_kv_heads != 0) {
    return Bad(absl::StrCat("bad sizes: num_q ", p.num_q, ", num_heads ", p.num_heads,
                            ", num_kv_heads ", p.num_kv_heads, ", num_kv ", p.num_kv, ", head_dim ",
                            p.head_dim));
  }
  if (p.block_size <= 0 || p.max_blocks < 0 || p.n_sink < 0 || p.n_window < 0 || p.num_rows < 0) {
    return Bad("block_size must be > 0; max_blocks, num_rows, n_sink, n_window >= 0");
  }
  if (p.max_blocks > 0 && (p.block_starts == nullptr || p.block_counts == nullptr)) {
    return Bad("block_starts / block_counts are null");
  }
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) {
    return Bad(absl::StrCat("scale must be finite and > 0, got ", p.scale));
  }
  if (p.rope->head_dim() != p.head_dim) return Bad("rope table head_dim differs");
  for (int i = 0; i < p.num_q; ++i) {
    if (p.q_pos[i] < 0 || p.q_pos[i] >= p.num_kv) {
      return Bad(
          absl::StrCat("q_pos[", i, "] = ", p.q_pos[i], " outside [0, num_kv = ", p.num_kv, ")"));
    }
    if (p.q_pos[i] >= p.rope->num_positions()) {
      return Bad(absl::StrCat("rope table covers ", p.rope->num_positions(), " positions; q_pos[",
                              i, "] = ", p.q_pos[i]));
    }
    if (p.q_plan_row[i] < 0 || p.q_plan_row[i] >= std::max(p.num_rows, 1) ||
        (p.num_rows == 0 && p.max_blocks > 0)) {
      return Bad(absl::StrCat("q_plan_row[", i, "] = ", p.q_plan_row[i], " outside [0, ",
                              p.num_rows, ")"));
    }
  }
  if (p.max_blocks > 0) {
    for (int64_t r = 0; r < int64_t{p.num_rows} * p.num_kv_heads; ++r) {
      const int count = p.block_counts[r];
      if (count < 0 || count > p.max_blocks) {
        return Bad(
            absl::StrCat("block_counts[", r, "] = ", count, " outside [0, ", p.max_blocks, "]"));
      }
      const int32_t* b = p.block_starts + r * p.max_blocks;
      for (int j = 0; j < count; ++j) {
        if (b[j] < 0 || b[j] >= p.num_kv || (j > 0 && b[j] <= b[j - 1])) {
          return Bad(absl::StrCat("block list ", r, " must be ascending, unique, in [0, ", p.num_kv,
                                  "); entry ", j, " is ", b[j]));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

void BsaKeysForQuery(int32_t pos, const int32_t* blocks, int count, int block_size, int n_sink,
                     int n_window, bool extend, BsaKeySet* out) {
  out->keys.clear();
  out->rope_positions.clear();
  const int32_t window_first = std::max<int32_t>(pos - n_window, n_sink);
  const int32_t renumber_end = std::min<int32_t>(window_first, pos + 1);
  for (int32_t j = 0; j < std::min<int32_t>(n_sink, pos + 1); ++j) out->keys.push_back(j);
  int32_t next = n_sink;  // first key the block part may still add (no key twice)
  for (int b = 0; b < count; ++b) {
    const int32_t lo = std::max<int32_t>(blocks[b], next);
    const int32_t hi = std::min<int64_t>(int64_t{blocks[b]} + block_size, renumber_end);
    for (int32_t j = lo; j < hi; ++j) out->keys.push_back(j);
    next = std::max(next, hi);
  }
  const int m = static_cast<int>(out->keys.size());
  for (int i = 0; i < m; ++i) {
    out->rope_positions.push_back(extend ? renumber_end - m + i : out->keys[i]);
  }
  for (int32_t j = window_first; j <= pos; ++j) {
    out->keys.push_back(j);
    out->rope_positions.push_back(j);
  }
}

absl::Status BsaRef(const BsaParams& p) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int d = p.head_dim;
  const int group = p.num_heads / p.num_kv_heads;
  const int64_t q_row = int64_t{p.num_heads} * d;
  const int64_t kv_row = int64_t{p.num_kv_heads} * d;
  BsaKeySet set;
  std::vector<float> k_rot, q_rot(d), acc(d), s_tile(kTile);
  for (int i = 0; i < p.num_q; ++i) {
    const int32_t pos = p.q_pos[i];
    for (int kh = 0; kh < p.num_kv_heads; ++kh) {
      const int64_t plan = int64_t{p.q_plan_row[i]} * p.num_kv_heads + kh;
      const int count = p.max_blocks > 0 ? p.block_counts[plan] : 0;
      const int32_t* blocks = p.max_blocks > 0 ? p.block_starts + plan * p.max_blocks : nullptr;
      BsaKeysForQuery(pos, blocks, count, p.block_size, p.n_sink, p.n_window, p.extend, &set);
      const int n = static_cast<int>(set.keys.size());
      k_rot.resize(static_cast<size_t>(n) * d);
      for (int j = 0; j < n; ++j) {
        p.rope->Rotate(p.k + set.keys[j] * kv_row + int64_t{kh} * d, set.rope_positions[j],
                       k_rot.data() + int64_t{j} * d);
      }
      for (int g = 0; g < group; ++g) {
        const int h = kh * group + g;
        p.rope->Rotate(p.q + i * q_row + int64_t{h} * d, pos, q_rot.data());
        float run_max = -std::numeric_limits<float>::infinity();
        float run_sum = 0.f;
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int t0 = 0; t0 < n; t0 += kTile) {
          const int t1 = std::min(n, t0 + kTile);
          float tile_max = -std::numeric_limits<float>::infinity();
          for (int j = t0; j < t1; ++j) {
            const float* kr = k_rot.data() + int64_t{j} * d;
            float dot = 0.f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < d; ++c) dot += q_rot[c] * kr[c];
            s_tile[j - t0] = dot * p.scale;
            tile_max = std::max(tile_max, s_tile[j - t0]);
          }
          const float new_max = std::max(run_max, tile_max);
          const float correction = std::exp(run_max - new_max);  // 0 on the first tile
          run_sum *= correction;
#pragma omp simd
          for (int c = 0; c < d; ++c) acc[c] *= correction;
          for (int j = t0; j < t1; ++j) {
            const float w = std::exp(s_tile[j - t0] - new_max);
            run_sum += w;
            const float* vj = p.v + set.keys[j] * kv_row + int64_t{kh} * d;
#pragma omp simd
            for (int c = 0; c < d; ++c) acc[c] += w * vj[c];
          }
          run_max = new_max;
        }
        float* o = p.out + i * q_row + int64_t{h} * d;
        const float inv = 1.f / run_sum;  // the query itself is always attended: run_sum > 0
        for (int c = 0; c < d; ++c) o[c] = acc[c] * inv;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
