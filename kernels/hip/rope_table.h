// RopeTable: precomputed RoPE cos/sin for positions [0, num_positions), so that HiP kernels can
// rotate single keys at rewritten positions (HIP.md 5) cheaply. The table is filled by RopeRef
// itself, so Rotate() is bit-identical to RopeRef at the same position.
//
// Owns its table ([positions][head_dim] fp32: cos in [0, half), sin in [half, head_dim)).
// Thread-safety: const methods may run concurrently; Reserve() must not race with them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/rope/rope.h"

namespace hipserve::kernels {

class RopeTable {
 public:
  // InvalidArgument for a bad config / head_dim (as RopeRef) or num_positions < 0.
  static absl::StatusOr<RopeTable> Create(const RopeConfig& config, int head_dim,
                                          int num_positions);

  // Extends the table to cover at least [0, num_positions). Never shrinks.
  absl::Status Reserve(int num_positions);

  int num_positions() const { return num_positions_; }
  int head_dim() const { return head_dim_; }
  const RopeConfig& config() const { return config_; }

  // out[0, head_dim) = x rotated to `pos` (HF rotate_half layout). Requires
  // 0 <= pos < num_positions(); out must not alias x.
  void Rotate(const float* x, int32_t pos, float* out) const { RotateBy(x, pos, 1.f, out); }

  // out = x rotated by -pos (the inverse of Rotate at `pos`: Rotate(out, pos) == x up to
  // rounding). Same requirements as Rotate.
  void RotateInverse(const float* x, int32_t pos, float* out) const { RotateBy(x, pos, -1.f, out); }

 private:
  // Rotate (sign 1) or RotateInverse (sign -1: the angle, i.e. the sine, negated; exact).
  void RotateBy(const float* x, int32_t pos, float sign, float* out) const {
    const int half = head_dim_ / 2;
    const float* cs = table_.data() + static_cast<int64_t>(pos) * head_dim_;
    const float* sn = cs + half;
    for (int i = 0; i < half; ++i) {
      const float x1 = x[i];
      const float x2 = x[i + half];
      const float s = sign * sn[i];
      out[i] = x1 * cs[i] - x2 * s;
      out[i + half] = x2 * cs[i] + x1 * s;
    }
  }

  RopeTable(const RopeConfig& config, int head_dim) : config_(config), head_dim_(head_dim) {}

  RopeConfig config_;
  int head_dim_ = 0;
  int num_positions_ = 0;
  std::vector<float> table_;
};

}  // namespace hipserve::kernels
