#include "kernels/hip/selection_recall.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/hip/bsa.h"

namespace hipserve::kernels {

absl::Status MeasureSelectionRecall(const SelectionRecallParams& p, SelectionRecall* out) {
  if (out == nullptr || p.q == nullptr || p.k == nullptr || (p.count > 0 && p.blocks == nullptr)) {
    return absl::InvalidArgumentError("MeasureSelectionRecall: null pointer");
  }
  if (p.group <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 || p.pos < 0 || p.pos >= p.num_kv ||
      p.block_size <= 0 || p.n_sink < 0 || p.n_window < 0 || p.count < 0 ||
      p.k_token_stride < p.head_dim ||
      (p.rope != nullptr &&
       (p.pos >= p.rope->num_positions() || p.rope->head_dim() != p.head_dim))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MeasureSelectionRecall: bad shape (group ", p.group, ", head_dim ", p.head_dim, ", pos ",
        p.pos, ", num_kv ", p.num_kv, ", block_size ", p.block_size, ")"));
  }
  const int d = p.head_dim;
  const int n = p.pos + 1;
  // Group-averaged dense probabilities, fp64 softmax over fp32 logits.
  std::vector<float> kr(d), qr(static_cast<size_t>(p.group) * d);
  for (int g = 0; g < p.group; ++g) {
    const float* qg = p.q + static_cast<int64_t>(g) * d;
    if (p.rope != nullptr) {
      p.rope->Rotate(qg, p.pos, qr.data() + static_cast<size_t>(g) * d);
    } else {
      std::copy_n(qg, d, qr.data() + static_cast<size_t>(g) * d);
    }
  }
  std::vector<double> logits(static_cast<size_t>(p.group) * n), prob(n, 0.0);
  for (int j = 0; j < n; ++j) {
    if (p.rope != nullptr) {
      p.rope->Rotate(p.k + j * p.k_token_stride, j, kr.data());
    } else {
      std::copy_n(p.k + j * p.k_token_stride, d, kr.data());
    }
    for (int g = 0; g < p.group; ++g) {
      const float* qg = qr.data() + static_cast<size_t>(g) * d;
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += double{qg[c]} * kr[c];
      logits[static_cast<size_t>(g) * n + j] = dot / std::sqrt(static_cast<double>(d));
    }
  }
  for (int g = 0; g < p.group; ++g) {
    const double* l = logits.data() + static_cast<size_t>(g) * n;
    const double mx = *std::max_element(l, l + n);
    double sum = 0;
    for (int j = 0; j < n; ++j) sum += std::exp(l[j] - mx);
    for (int j = 0; j < n; ++j) prob[j] += std::exp(l[j] - mx) / sum / p.group;
  }
  BsaKeySet set;
  BsaKeysForQuery(p.pos, p.blocks, p.count, p.block_size, p.n_sink, p.n_window, /*extend=*/false,
                  &set);
  std::vector<char> in_set(n, 0);
  for (int32_t key : set.keys) in_set[key] = 1;
  SelectionRecall r;
  const int32_t window_first = std::max<int32_t>(p.pos - p.n_window, p.n_sink);
  for (int j = 0; j < n; ++j) {
    if (in_set[j]) r.selected += prob[j];
    if (j < p.n_sink || j >= window_first) r.fixed += prob[j];
  }
  // Oracle: the best `count` aligned candidate blocks (clipped to the candidate range).
  std::vector<double> block_mass;
  for (int32_t b = p.n_sink; b < window_first; b += p.block_size) {
    double m = 0;
    for (int32_t j = b; j < std::min(b + p.block_size, window_first); ++j) m += prob[j];
    block_mass.push_back(m);
  }
  const int keep = std::min<int>(p.count, static_cast<int>(block_mass.size()));
  std::partial_sort(block_mass.begin(), block_mass.begin() + keep, block_mass.end(),
                    std::greater<double>());
  r.oracle = r.fixed;
  for (int i = 0; i < keep; ++i) r.oracle += block_mass[i];
  *out = r;
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
