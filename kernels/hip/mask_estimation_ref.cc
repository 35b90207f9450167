#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/hip/mask_estimation.h"

namespace hipserve::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("EstimateMask: ", what));
}

int CeilLog2(int c) {
  int it = 0;
  while ((int64_t{1} << it) < c) ++it;
  return it;
}

absl::Status ValidateChunkList(const ChunkList& l, int num_kv, const std::string& name) {
  if (l.chunk_size <= 0) return Bad(absl::StrCat(name, ".chunk_size must be > 0"));
  for (size_t i = 0; i < l.starts.size(); ++i) {
    if (l.starts[i] < 0 || l.starts[i] >= l.range_end || l.range_end > num_kv ||
        (i > 0 && l.starts[i] <= l.starts[i - 1])) {
      return Bad(absl::StrCat(
          name, ".starts must be ascending, unique and in [0, range_end = ", l.range_end,
          " <= num_kv = ", num_kv, "); entry ", i, " is ", l.starts[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const MaskEstimationParams& p) {
  if (p.q == nullptr || p.q_pos == nullptr || p.k == nullptr) {
    return Bad("q, q_pos and k must not be null");
  }
  if (p.spec == nullptr) return Bad("spec is null");
  if (p.rope == nullptr) return Bad("rope is null");
  if (p.num_q <= 0 || p.group <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0) {
    return Bad(absl::StrCat("need num_q > 0, group > 0 and an even head_dim > 0; got ", p.num_q,
                            ", ", p.group, ", ", p.head_dim));
  }
  if (p.q_token_stride < int64_t{p.group} * p.head_dim || p.k_token_stride < p.head_dim) {
    return Bad("q_token_stride / k_token_stride too small for group * head_dim / head_dim");
  }
  if (p.rope->head_dim() != p.head_dim) {
    return Bad(
        absl::StrCat("rope table head_dim ", p.rope->head_dim(), " != head_dim ", p.head_dim));
  }
  for (int i = 0; i < p.num_q; ++i) {
    if (p.q_pos[i] < 0 || (i > 0 && p.q_pos[i] < p.q_pos[i - 1])) {
      return Bad("q_pos must be non-negative and ascending");
    }
  }
  const PruningSpec& s = *p.spec;
  const int stages = s.num_stages();
  if (stages == 0 || static_cast<int>(s.keep_tokens.size()) != stages ||
      static_cast<int>(s.stride_q.size()) != stages) {
    return Bad("spec lists must all have one entry per stage");
  }
  for (int i = 0; i < stages; ++i) {
    if (s.chunk_sizes[i] <= 0 || s.stride_q[i] <= 0 || s.keep_tokens[i] <= 0 ||
        (i > 0 && s.chunk_sizes[i - 1] % s.chunk_sizes[i] != 0)) {
      return Bad(absl::StrCat("spec stage ", i, " is inconsistent (see ValidateHipConfig)"));
    }
  }
  if (!s.later_stages.empty() && static_cast<int>(s.later_stages.size()) != stages - 1) {
    return Bad(absl::StrCat("spec.later_stages must be empty or have ", stages - 1,
                            " entries, got ", s.later_stages.size()));
  }
  for (int i = 0; i < stages; ++i) {
    const Stage1Representatives r = s.representatives(i);
    if (r != Stage1Representatives::kProbes && r != Stage1Representatives::kPageBound &&
        r != Stage1Representatives::kBlockMeans && r != Stage1Representatives::kExact) {
      return Bad(absl::StrCat("spec stage ", i, " representatives have an unknown value"));
    }
    if (r == Stage1Representatives::kBlockMeans && s.mean_block_size <= 0) {
      return Bad(absl::StrCat("spec.mean_block_size must be > 0, got ", s.mean_block_size));
    }
  }
  if (p.start_stage < 0 || p.start_stage >= stages) {
    return Bad(absl::StrCat("start_stage ", p.start_stage, " outside [0, ", stages, ")"));
  }
  if (p.start_stage == 0) {
    if (p.range_begin < 0 || (p.range_begin < p.range_end && p.range_end > p.num_kv)) {
      return Bad(absl::StrCat("candidate range [", p.range_begin, ", ", p.range_end,
                              ") must lie in [0, num_kv = ", p.num_kv, ")"));
    }
  } else {
    if (p.start_input == nullptr) return Bad("start_stage > 0 needs start_input");
    if (p.start_input->chunk_size != s.chunk_sizes[p.start_stage - 1]) {
      return Bad(absl::StrCat("start_input.chunk_size ", p.start_input->chunk_size,
                              " != chunk_sizes[", p.start_stage - 1,
                              "] = ", s.chunk_sizes[p.start_stage - 1]));
    }
    if (absl::Status st = ValidateChunkList(*p.start_input, p.num_kv, "start_input"); !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

// Scores probes of one stage against the stage's scoring rows.
class StageScorer {
 public:
  StageScorer(const MaskEstimationParams& p, int stage, int n_chunks)
      : p_(p), key_(p.head_dim), rot_(p.head_dim) {
    const int d = p.head_dim;
    const int stride = p.spec->stride_q[stage];
    const int groups = (p.num_q + stride - 1) / stride;
    num_rows_ = groups * p.group;
    rows_.assign(static_cast<int64_t>(num_rows_) * d, 0.f);
    for (int r = 0; r < groups; ++r) {
      const int first = r * stride, last = std::min(p.num_q, first + stride);
      for (int g = 0; g < p.group; ++g) {
        float* row = rows_.data() + (static_cast<int64_t>(r) * p.group + g) * d;
        for (int i = first; i < last; ++i) {
          const float* q = p.q + i * p.q_token_stride + static_cast<int64_t>(g) * d;
          p.rope->Rotate(q, QueryPosition(p.q_pos[i], n_chunks), rot_.data());
          for (int c = 0; c < d; ++c) row[c] += rot_[c];
        }
        const float count = static_cast<float>(last - first);
        for (int c = 0; c < d; ++c) row[c] /= count;
      }
    }
    // Column-major copy for Probe: rows_t_[c * num_rows_ + r] = row r, dim c.
    rows_t_.resize(rows_.size());
    for (int r = 0; r < num_rows_; ++r) {
      for (int c = 0; c < d; ++c)
        rows_t_[static_cast<int64_t>(c) * num_rows_ + r] = rows_[r * d + c];
    }
    dots_.resize(num_rows_);
  }

  int32_t QueryPosition(int32_t pos, int n_chunks) const {
    switch (p_.spec->positions) {
      case PruningPositions::kReal:
        return pos;
      case PruningPositions::kRelative:
        return p_.spec->n_window + 1;
      case PruningPositions::kChunkIndexed:
        return std::min<int64_t>(pos, int64_t{n_chunks} + p_.spec->n_window);
    }
    return pos;
  }

  // Score of key `key` rotated at `rope_pos`.
  float Probe(int32_t key, int32_t rope_pos) {
    p_.rope->Rotate(p_.k + key * p_.k_token_stride, rope_pos, key_.data());
    return ScoreRotated(key_.data());
  }

  // Score of the un-rotated vector `v` rotated at `rope_pos` (block means).
  float ProbeVector(const float* v, int32_t rope_pos) {
    p_.rope->Rotate(v, rope_pos, key_.data());
    return ScoreRotated(key_.data());
  }

  int num_rows() const { return num_rows_; }
  const float* row(int r) const { return rows_.data() + static_cast<int64_t>(r) * p_.head_dim; }

 private:
  // Max over rows of row . key (key already rotated).
  float ScoreRotated(const float* key) {
    const int d = p_.head_dim;
    // Every row's dot product is the sequential sum over c (fp32, no FMA: this file is built
    // with -ffp-contract=off); the rows are independent, so they are computed side by side.
    const int n = num_rows_;
    float* dots = dots_.data();
    std::fill_n(dots, n, 0.f);
    for (int c = 0; c < d; ++c) {
      const float kc = key[c];
      const float* col = rows_t_.data() + static_cast<int64_t>(c) * n;
#pragma omp simd
      for (int r = 0; r < n; ++r) dots[r] += col[r] * kc;
    }
    float best = kNegInf;
    for (int r = 0; r < n; ++r) {
      if (dots[r] > best) best = dots[r];  // NaN never wins
    }
    return best;
  }

  const MaskEstimationParams& p_;
  int num_rows_ = 0;
  std::vector<float> rows_;    // [num_rows][head_dim]
  std::vector<float> rows_t_;  // [head_dim][num_rows]
  std::vector<float> dots_;    // [num_rows] scratch
  std::vector<float> key_, rot_;
};

// Binary descent score of chunk [lo, hi) (chunk `index` of the stage input).
float ChunkScore(StageScorer& scorer, PruningPositions mode, int32_t lo, int32_t hi, int32_t index,
                 int iterations) {
  auto position = [&](int32_t key, bool right) -> int32_t {
    switch (mode) {
      case PruningPositions::kReal:
        return key;
      case PruningPositions::kRelative:
        return right ? 1 : 0;
      case PruningPositions::kChunkIndexed:
        return index;
    }
    return key;
  };
  if (hi - lo == 1) return scorer.Probe(lo, position(lo, false));
  float best = kNegInf;
  for (int it = 0; it < iterations && hi - lo >= 2; ++it) {
    const int32_t mid = lo + (hi - lo) / 2;
    const int32_t left = lo + (mid - lo) / 2;
    const int32_t right = mid + (hi - mid) / 2;
    const float sl = scorer.Probe(left, position(left, false));
    const float sr = scorer.Probe(right, position(right, true));
    best = std::max({best, sl, sr});
    if (sl >= sr) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return best;
}

// The scoring position of key `key` in chunk `index` (a left probe's in kRelative).
int32_t KeyScoringPosition(PruningPositions mode, int32_t key, int32_t index) {
  switch (mode) {
    case PruningPositions::kReal:
      return key;
    case PruningPositions::kRelative:
      return 0;
    case PruningPositions::kChunkIndexed:
      return index;
  }
  return key;
}

// Chunk scores with page bounds, block means or exact keys (mask_estimation.h), with their
// scratch.
class Stage1Representation {
 public:
  Stage1Representation(const MaskEstimationParams& p, StageScorer& scorer)
      : p_(p),
        scorer_(scorer),
        mn_(p.head_dim),
        mx_(p.head_dim),
        mean_(p.head_dim),
        unrotated_(static_cast<size_t>(scorer.num_rows()) * p.head_dim) {}

  // `page` = keys per summary (kHipPageSize at stage 1; min(kHipPageSize, chunk) later).
  float PageBoundScore(int32_t lo, int32_t hi, int32_t index, int32_t page_size) {
    const int d = p_.head_dim;
    const PruningPositions mode = p_.spec->positions;
    const int rows = scorer_.num_rows();
    // Rows against un-rotated keys: kRelative keys sit at 0 (no rotation); kChunkIndexed keys
    // all sit at `index`, which moves onto the rows as R(-index).
    if (mode == PruningPositions::kChunkIndexed) {
      for (int r = 0; r < rows; ++r) {
        p_.rope->RotateInverse(scorer_.row(r), index, unrotated_.data() + int64_t{r} * d);
      }
    }
    float best = kNegInf;
    for (int32_t page = lo / page_size; page <= (hi - 1) / page_size; ++page) {
      const int32_t first = page * page_size;
      if (first + page_size > p_.num_kv) {  // open page: exact scores of its chunk keys
        for (int32_t j = std::max(lo, first); j < std::min(hi, first + page_size); ++j) {
          const float sc = scorer_.Probe(j, KeyScoringPosition(mode, j, index));
          if (sc > best) best = sc;
        }
        continue;
      }
      KeyPageMinMax(p_.k, p_.k_token_stride, d, first, page_size, mn_.data(), mx_.data());
      for (int r = 0; r < rows; ++r) {
        float b;
        if (mode == PruningPositions::kReal) {
          b = PageBoundAnyRotation(scorer_.row(r), mn_.data(), mx_.data(), d);
        } else if (mode == PruningPositions::kChunkIndexed) {
          b = PageBound(unrotated_.data() + int64_t{r} * d, mn_.data(), mx_.data(), d);
        } else {
          b = PageBound(scorer_.row(r), mn_.data(), mx_.data(), d);
        }
        if (b > best) best = b;  // NaN never wins
      }
    }
    return best;
  }

  // `size` = keys per mean block (mean_block_size at stage 1; min(that, chunk) later).
  float BlockMeansScore(int32_t lo, int32_t hi, int32_t index, int32_t size) {
    float best = kNegInf;
    for (int32_t b = lo; b < hi; b += size) {
      const int n = std::min(size, hi - b);
      BlockMeanKey(p_.k, p_.k_token_stride, p_.head_dim, b, n, mean_.data());
      const float sc = scorer_.ProbeVector(
          mean_.data(), KeyScoringPosition(p_.spec->positions, b + (n - 1) / 2, index));
      if (sc > best) best = sc;
    }
    return best;
  }

  // Max over the chunk's keys of their probe scores.
  float ExactScore(int32_t lo, int32_t hi, int32_t index) {
    float best = kNegInf;
    for (int32_t j = lo; j < hi; ++j) {
      const float sc = scorer_.Probe(j, KeyScoringPosition(p_.spec->positions, j, index));
      if (sc > best) best = sc;  // NaN never wins
    }
    return best;
  }

 private:
  const MaskEstimationParams& p_;
  StageScorer& scorer_;
  std::vector<float> mn_, mx_, mean_, unrotated_;
};

int32_t MaxRopePosition(const MaskEstimationParams& p, int n_chunks) {
  switch (p.spec->positions) {
    case PruningPositions::kReal:
      return std::max(p.num_kv - 1, p.q_pos[p.num_q - 1]);
    case PruningPositions::kRelative:
      return p.spec->n_window + 1;
    case PruningPositions::kChunkIndexed:
      return n_chunks + p.spec->n_window;
  }
  return 0;
}

absl::Status RunStage(const MaskEstimationParams& p, int stage, const ChunkList& in,
                      ChunkList* kept) {
  kept->chunk_size = in.chunk_size;
  kept->range_end = in.range_end;
  const int n = static_cast<int>(in.starts.size());
  const int m = p.spec->keep_chunks(stage);
  if (n <= m) {  // everything survives; scoring could not change that
    kept->starts = in.starts;
    return absl::OkStatus();
  }
  if (MaxRopePosition(p, n) >= p.rope->num_positions()) {
    return Bad(absl::StrCat("rope table covers ", p.rope->num_positions(), " positions; stage ",
                            stage, " needs ", MaxRopePosition(p, n) + 1));
  }
  StageScorer scorer(p, stage, n);
  const int iterations = CeilLog2(in.chunk_size);
  const Stage1Representatives reps = p.spec->representatives(stage);
  // Summary granularity: stage 1 keeps HIP.md 2.1's 64-key pages and mean_block_size; later
  // stages use the same summaries at their own chunk size when that is smaller.
  const int32_t page_size = stage == 0 ? kHipPageSize : std::min(kHipPageSize, in.chunk_size);
  const int32_t mean_size =
      stage == 0 ? p.spec->mean_block_size : std::min(p.spec->mean_block_size, in.chunk_size);
  Stage1Representation rep(p, scorer);
  std::vector<float> score(n);
  for (int i = 0; i < n; ++i) {
    const int32_t lo = in.starts[i];
    const int32_t hi = std::min(lo + in.chunk_size, in.range_end);
    switch (reps) {
      case Stage1Representatives::kProbes:
        score[i] = ChunkScore(scorer, p.spec->positions, lo, hi, i, iterations);
        break;
      case Stage1Representatives::kPageBound:
        score[i] = rep.PageBoundScore(lo, hi, i, page_size);
        break;
      case Stage1Representatives::kBlockMeans:
        score[i] = rep.BlockMeansScore(lo, hi, i, mean_size);
        break;
      case Stage1Representatives::kExact:
        score[i] = rep.ExactScore(lo, hi, i);
        break;
    }
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Higher score first; equal scores: lower position (lower index: starts are ascending).
  std::nth_element(order.begin(), order.begin() + (m - 1), order.end(), [&](int a, int b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  order.resize(m);
  std::sort(order.begin(), order.end());
  kept->starts.resize(m);
  for (int i = 0; i < m; ++i) kept->starts[i] = in.starts[order[i]];
  return absl::OkStatus();
}

}  // namespace

void KeyPageMinMax(const float* k, int64_t k_token_stride, int head_dim, int32_t first, int count,
                   float* mn, float* mx) {
  const float* k0 = k + first * k_token_stride;
  std::copy_n(k0, head_dim, mn);
  std::copy_n(k0, head_dim, mx);
  for (int j = 1; j < count; ++j) {
    const float* kj = k + (first + j) * k_token_stride;
    for (int c = 0; c < head_dim; ++c) {
      mn[c] = std::min(mn[c], kj[c]);
      mx[c] = std::max(mx[c], kj[c]);
    }
  }
}

float PageBound(const float* q, const float* mn, const float* mx, int head_dim) {
  float sum = 0.f;
  for (int c = 0; c < head_dim; ++c) sum += std::max(q[c] * mx[c], q[c] * mn[c]);
  return sum;
}

float PageBoundAnyRotation(const float* q, const float* mn, const float* mx, int head_dim) {
  const int half = head_dim / 2;
  float sum = 0.f;
  for (int c = 0; c < half; ++c) {
    const float m1 = std::max(std::fabs(mn[c]), std::fabs(mx[c]));
    const float m2 = std::max(std::fabs(mn[c + half]), std::fabs(mx[c + half]));
    sum += std::sqrt(q[c] * q[c] + q[c + half] * q[c + half]) * std::sqrt(m1 * m1 + m2 * m2);
  }
  return sum;
}

void BlockMeanKey(const float* k, int64_t k_token_stride, int head_dim, int32_t first, int count,
                  float* out) {
  std::fill_n(out, head_dim, 0.f);
  for (int j = 0; j < count; ++j) {
    const float* kj = k + (first + j) * k_token_stride;
    for (int c = 0; c < head_dim; ++c) out[c] += kj[c];
  }
  const float n = static_cast<float>(count);
  for (int c = 0; c < head_dim; ++c) out[c] /= n;
}

ChunkList ChunksOfRange(int32_t range_begin, int32_t range_end, int32_t chunk_size) {
  ChunkList l;
  l.chunk_size = chunk_size;
  l.range_end = range_end;
  for (int64_t s = range_begin; s < range_end; s += chunk_size) {
    l.starts.push_back(static_cast<int32_t>(s));
  }
  return l;
}

ChunkList SplitChunks(const ChunkList& in, int32_t sub_size) {
  ChunkList l;
  l.chunk_size = sub_size;
  l.range_end = in.range_end;
  l.starts.reserve(in.starts.size() * static_cast<size_t>(in.chunk_size / sub_size));
  for (int32_t start : in.starts) {
    const int64_t end = std::min<int64_t>(int64_t{start} + in.chunk_size, in.range_end);
    for (int64_t s = start; s < end; s += sub_size) l.starts.push_back(static_cast<int32_t>(s));
  }
  return l;
}

absl::Status EstimateMaskRef(const MaskEstimationParams& p, MaskEstimationResult* out) {
  if (out == nullptr) return Bad("out is null");
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const PruningSpec& spec = *p.spec;
  const int stages = spec.num_stages();
  out->kept.assign(stages, ChunkList{});
  ChunkList input =
      p.start_stage == 0
          ? ChunksOfRange(p.range_begin, std::max(p.range_begin, p.range_end), spec.chunk_sizes[0])
          : SplitChunks(*p.start_input, spec.chunk_sizes[p.start_stage]);
  for (int s = p.start_stage; s < stages; ++s) {
    if (s > p.start_stage) input = SplitChunks(out->kept[s - 1], spec.chunk_sizes[s]);
    if (absl::Status st = RunStage(p, s, input, &out->kept[s]); !st.ok()) return st;
  }
  // Final list: causal (start not after the block's last query), sorted, unique.
  std::vector<int32_t>& blocks = out->kept.back().starts;
  const int32_t last_pos = p.q_pos[p.num_q - 1];
  blocks.erase(
      std::remove_if(blocks.begin(), blocks.end(), [&](int32_t b) { return b > last_pos; }),
      blocks.end());
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
