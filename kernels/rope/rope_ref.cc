#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/rope/rope.h"

namespace hipserve::kernels {
namespace {

absl::Status ValidateConfig(const RopeConfig& c) {
  if (!(c.theta > 0.f) || !std::isfinite(c.theta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: config.theta must be > 0, got ", c.theta));
  }
  switch (c.scaling) {
    case RopeScaling::kNone:
      return absl::OkStatus();
    case RopeScaling::kLlama3:
      if (!(c.factor > 0.f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("Rope: config.factor must be > 0, got ", c.factor));
      }
      if (!(c.low_freq_factor > 0.f) || !(c.high_freq_factor > 0.f) ||
          c.low_freq_factor == c.high_freq_factor) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Rope: config.low_freq_factor (", c.low_freq_factor, ") and high_freq_factor (",
            c.high_freq_factor, ") must be > 0 and differ"));
      }
      if (c.original_max_position <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Rope: config.original_max_position must be > 0, got ", c.original_max_position));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("Rope: config.scaling has an unknown value");
}

// Inverse frequencies in double: the angle position * inv_freq must stay accurate at positions
// in the millions, where one fp32 ulp of inv_freq already moves the angle by ~0.06 rad.
absl::Status InvFreqDouble(const RopeConfig& c, int head_dim, std::vector<double>* inv_freq) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: head_dim must be positive and even, got ", head_dim));
  }
  if (absl::Status s = ValidateConfig(c); !s.ok()) return s;
  const int half = head_dim / 2;
  inv_freq->resize(half);
  for (int i = 0; i < half; ++i) {
    // HF: 1 / theta ** (arange(0, dim, 2) / dim)
    double f = 1.0 / std::pow(static_cast<double>(c.theta), (2.0 * i) / head_dim);
    if (c.scaling == RopeScaling::kLlama3) {
      // HF _compute_llama3_parameters.
      const double old_len = c.original_max_position;
      const double low_freq_wavelen = old_len / c.low_freq_factor;
      const double high_freq_wavelen = old_len / c.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_freq_wavelen) {
        f = f / c.factor;  // low frequency: fully interpolated
      } else if (wavelen >= high_freq_wavelen) {
        // medium: smooth blend between interpolated and original
        const double smooth =
            (old_len / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
        f = (1.0 - smooth) * f / c.factor + smooth * f;
      }  // high frequency: unchanged
    }
    (*inv_freq)[i] = f;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RopeInvFreq(const RopeConfig& c, int head_dim, float* inv_freq) {
  if (inv_freq == nullptr) return absl::InvalidArgumentError("Rope: inv_freq is null");
  std::vector<double> f;
  if (absl::Status s = InvFreqDouble(c, head_dim, &f); !s.ok()) return s;
  for (size_t i = 0; i < f.size(); ++i) inv_freq[i] = static_cast<float>(f[i]);
  return absl::OkStatus();
}

absl::Status RopeRef(const RopeParams& p) {
  if (p.x == nullptr) return absl::InvalidArgumentError("Rope: x is null");
  if (p.positions == nullptr) return absl::InvalidArgumentError("Rope: positions is null");
  if (p.tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Rope: tokens must be > 0, got ", p.tokens));
  }
  if (p.heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Rope: heads must be > 0, got ", p.heads));
  }
  std::vector<double> inv_freq;
  if (absl::Status s = InvFreqDouble(p.config, p.head_dim, &inv_freq); !s.ok()) return s;
  for (int t = 0; t < p.tokens; ++t) {
    if (p.positions[t] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Rope: positions[", t, "] is negative (", p.positions[t], ")"));
    }
  }

  const int half = p.head_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int t = 0; t < p.tokens; ++t) {
    const double pos = p.positions[t];
    for (int i = 0; i < half; ++i) {
      const double angle = pos * inv_freq[i];
      cos_t[i] = static_cast<float>(std::cos(angle));
      sin_t[i] = static_cast<float>(std::sin(angle));
    }
    for (int h = 0; h < p.heads; ++h) {
      float* v = p.x + (static_cast<int64_t>(t) * p.heads + h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const float x1 = v[i];
        const float x2 = v[i + half];
        v[i] = x1 * cos_t[i] - x2 * sin_t[i];
        v[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
