#include "kernels/hip/rope_table.h"

#include <numeric>

#include "absl/strings/str_cat.h"

namespace hipserve::kernels {

absl::StatusOr<RopeTable> RopeTable::Create(const RopeConfig& config, int head_dim,
                                            int num_positions) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeTable: head_dim must be positive and even, got ", head_dim));
  }
  RopeTable t(config, head_dim);
  // Validates the config even when no position is requested yet.
  std::vector<float> inv_freq(head_dim / 2);
  if (absl::Status s = RopeInvFreq(config, head_dim, inv_freq.data()); !s.ok()) return s;
  if (absl::Status s = t.Reserve(num_positions); !s.ok()) return s;
  return t;
}

absl::Status RopeTable::Reserve(int num_positions) {
  if (num_positions < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeTable: num_positions must be >= 0, got ", num_positions));
  }
  if (num_positions <= num_positions_) return absl::OkStatus();
  const int old = num_positions_;
  const int add = num_positions - old;
  const int half = head_dim_ / 2;
  // Rotating the vector (1, .., 1 | 0, .., 0) with RopeRef yields exactly (cos | sin):
  // x1 * c - 0 * s == c and 0 * c + x1 * s == s in fp32.
  std::vector<float> fresh(static_cast<int64_t>(add) * head_dim_, 0.f);
  for (int t = 0; t < add; ++t) {
    std::fill_n(fresh.begin() + static_cast<int64_t>(t) * head_dim_, half, 1.f);
  }
  std::vector<int32_t> positions(add);
  std::iota(positions.begin(), positions.end(), old);
  RopeParams p;
  p.x = fresh.data();
  p.positions = positions.data();
  p.tokens = add;
  p.heads = 1;
  p.head_dim = head_dim_;
  p.config = config_;
  if (absl::Status s = RopeRef(p); !s.ok()) return s;
  table_.insert(table_.end(), fresh.begin(), fresh.end());
  num_positions_ = num_positions;
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
