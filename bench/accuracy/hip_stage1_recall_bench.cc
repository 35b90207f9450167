// bench_hip_stage1_recall: A1-style needle recall of HiP mask estimation on the CPU reference,
// for each chunk representative (probes, page bound, block means, exact) at stage 1 or at every
// pruning stage. What it measures, how,
// and every flag are in kUsage below (printed by --help).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/dtype/bf16.h"
#include "kernels/hip/bsa.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip/selection_recall.h"

namespace hipserve::bench {
namespace {}  // namespace

constexpr char kUsage[] =
    R"(bench_hip_stage1_recall: A1-style needle recall of HiP mask estimation, CPU reference
(kernels/hip/mask_estimation_ref.cc), one decode query per KV head, "8B layer" shape (32 query
heads, 8 KV heads, head dim 128), the "3K" preset, Llama 3.1 RoPE for the pruning positions.
Not the A1 goal's GPU run: the same data recipe, scored on the CPU.

Data (as bench/hip/hip_decode_bench.cc builds A1): q, K and V uniform in +-[1/64, 1], rounded
to bf16; per KV head, --spans spans of --span_len consecutive keys equal to --needle_norm times
the unit mean query of the head's group, planted at uniform random starts in
[n_sink, T - 1 - n_window - span_len). The query sits at T - 1. Attention (dense and HiP) has
no RoPE, as in A1; the mask estimation uses the layer's pruning positions.

Per T and option, pooled over --seeds seeds and all KV heads:
  needle_s1 / s2 / final: share of needle keys inside the chunks kept by stage 1, stage 2 and
    in the final block list;
  mass: dense attention probability mass of sink + window + selected blocks
    (MeasureSelectionRecall, group mean), its mean and minimum; oracle: the same count of best
    blocks by true mass;
  rel_err: relative L2 error of the HiP attention output vs dense (fp64, all query heads);
  floor: the same error for sink + window + exactly the 8-key blocks covering the needles;
  mask_ms: mask estimation time per KV head (this machine).

  bench_hip_stage1_recall [--lens 32768,131072] [--seeds 2] [--spans 4] [--span_len 32]
                          [--needle_norm 64] [--layer 8] [--kv_heads 8]
                          [--options probes,page_bound,block_means16,block_means8]
                          [--json out.json]
  --options: comma-separated; each is NAME (stage 1 only, later stages probes: the default
  scope), NAME+all (NAME at every pruning stage, at the stage's granularity) or A/B/C (one name
  per stage). NAME: probes, page_bound, block_meansN (N keys per mean), exact (every key
  scored; docs/HIP_NOTES.md 7). Example: probes,page_bound+all,page_bound/page_bound/exact
  --layer: 8 = relative pruning positions, k = 2048; 0 = chunk-indexed, k = 4096 (the default
  layer override).
)";

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(item);
  return v;
}

struct Args {
  std::vector<int> lens = {32768, 131072};
  int seeds = 2, spans = 4, span_len = 32, layer = 8, kv_heads = 8;
  float needle_norm = 64.f;
  std::vector<std::string> options = {"probes", "page_bound", "block_means16", "block_means8"};
  std::string json;
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", s.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--lens") {
      a.lens.clear();
      for (const std::string& x : Split(next())) a.lens.push_back(std::atoi(x.c_str()));
    } else if (s == "--seeds") {
      a.seeds = std::max(1, std::atoi(next().c_str()));
    } else if (s == "--spans") {
      a.spans = std::max(1, std::atoi(next().c_str()));
    } else if (s == "--span_len") {
      a.span_len = std::max(1, std::atoi(next().c_str()));
    } else if (s == "--needle_norm") {
      a.needle_norm = std::atof(next().c_str());
    } else if (s == "--layer") {
      a.layer = std::atoi(next().c_str());
    } else if (s == "--kv_heads") {
      a.kv_heads = std::clamp(std::atoi(next().c_str()), 1, 8);
    } else if (s == "--options") {
      a.options = Split(next());
    } else if (s == "--json") {
      a.json = next();
    } else {
      std::fprintf(stderr, "unknown argument %s (see --help)\n", s.c_str());
      std::exit(2);
    }
  }
  return a;
}

bool ParseRepresentatives(const std::string& name, kernels::Stage1Representatives* r,
                          int* mean_block_size) {
  if (name == "probes") {
    *r = kernels::Stage1Representatives::kProbes;
  } else if (name == "page_bound") {
    *r = kernels::Stage1Representatives::kPageBound;
  } else if (name == "exact") {
    *r = kernels::Stage1Representatives::kExact;
  } else if (name.rfind("block_means", 0) == 0) {
    *r = kernels::Stage1Representatives::kBlockMeans;
    const int size = std::atoi(name.c_str() + 11);
    if (size <= 0 || (*mean_block_size != 0 && *mean_block_size != size)) return false;
    *mean_block_size = size;
  } else {
    return false;
  }
  return true;
}

// "NAME" = stage 1 only (later stages probes, the default); "NAME+all" = NAME at every stage;
// "A/B/C" = one name per stage.
bool ApplyOption(const std::string& option, kernels::HipConfig* c) {
  std::vector<std::string> names;
  const size_t plus = option.find("+all");
  if (plus != std::string::npos && plus + 4 == option.size()) {
    names.assign(c->num_stages(), option.substr(0, plus));
  } else {
    std::stringstream ss(option);
    std::string item;
    while (std::getline(ss, item, '/')) names.push_back(item);
  }
  if (names.empty()) return false;
  int mean_block_size = 0;
  std::vector<kernels::Stage1Representatives> reps(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    if (!ParseRepresentatives(names[i], &reps[i], &mean_block_size)) return false;
  }
  c->stage1_representatives = reps[0];
  c->later_stage_representatives.assign(reps.begin() + 1, reps.end());
  if (mean_block_size > 0) c->mean_block_size = mean_block_size;
  return kernels::ValidateHipConfig(*c).ok();
}

struct Acc {
  double needles = 0, s1 = 0, s2 = 0, fin = 0;
  double mass = 0, mass_min = 1, oracle = 0, n = 0;
  double err_num = 0, err_den = 0, mask_s = 0;
};

float RandomValue(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(1.f / 64, 1.f);
  const float x = u(rng);
  return kernels::RoundToBf16((rng() & 1) ? x : -x);
}

int Main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  constexpr int kHeads = 32, kKvHeads = 8, kDim = 128, kGroup = kHeads / kKvHeads;
  kernels::RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = kernels::RopeScaling::kLlama3;
  rc.factor = 8.f;
  std::vector<kernels::HipConfig> configs;
  for (const std::string& o : a.options) {
    kernels::HipConfig c;
    if (!ApplyOption(o, &c)) {
      std::fprintf(stderr, "bad option %s\n", o.c_str());
      return 2;
    }
    configs.push_back(c);
  }
  const int nopt = static_cast<int>(configs.size());
  const kernels::HipConfig base;
  std::string json = "{\n  \"bench\": \"hip_stage1_recall\",\n  \"device\": \"cpu\",\n";
  json += "  \"layer\": " + std::to_string(a.layer) + ", \"spans\": " + std::to_string(a.spans) +
          ", \"span_len\": " + std::to_string(a.span_len) +
          ", \"needle_norm\": " + std::to_string(a.needle_norm) +
          ", \"seeds\": " + std::to_string(a.seeds) +
          ", \"kv_heads\": " + std::to_string(a.kv_heads) + ",\n  \"rows\": [\n";
  std::printf(
      "layer %d (%s), %d spans of %d keys per KV head, needle norm %.0f, %d seeds x %d KV "
      "heads\n",
      a.layer, kernels::PruningPositionsName(kernels::PruningSpecForLayer(base, a.layer).positions),
      a.spans, a.span_len, a.needle_norm, a.seeds, a.kv_heads);
  std::printf("%-8s %-30s %9s %9s %9s %8s %8s %8s %8s %8s %8s\n", "T", "option", "needle_s1",
              "needle_s2", "needle_fin", "mass", "mass_min", "oracle", "rel_err", "floor",
              "mask_ms");
  bool first_row = true;
  for (int T : a.lens) {
    const int32_t pos = T - 1;
    const int rope_positions = base.n_window + 2 + std::max(T / 256, 1024) + 2;
    absl::StatusOr<kernels::RopeTable> rope = kernels::RopeTable::Create(rc, kDim, rope_positions);
    if (!rope.ok()) {
      std::fprintf(stderr, "%s\n", rope.status().ToString().c_str());
      return 1;
    }
    std::vector<Acc> acc(nopt);
    double floor_num = 0, floor_den = 0;
    std::vector<float> k(static_cast<size_t>(T) * kDim), v(k.size());
    for (int seed = 0; seed < a.seeds; ++seed) {
      std::mt19937_64 rng(1000003ull * seed + T);
      std::vector<float> q(kHeads * kDim);
      for (float& x : q) x = RandomValue(rng);
      for (int h = 0; h < a.kv_heads; ++h) {
        for (float& x : k) x = RandomValue(rng);
        for (float& x : v) x = RandomValue(rng);
        const float* qg = q.data() + h * kGroup * kDim;
        // Needle key: needle_norm * unit mean query of the group.
        std::vector<double> dir(kDim, 0.0);
        for (int g = 0; g < kGroup; ++g) {
          for (int c = 0; c < kDim; ++c) dir[c] += qg[g * kDim + c];
        }
        double norm = 0;
        for (double d : dir) norm += d * d;
        norm = std::sqrt(norm);
        std::vector<char> needle(T, 0);
        const int lo = base.n_sink, hi = T - 1 - base.n_window - a.span_len;
        for (int sp = 0; sp < a.spans; ++sp) {
          const int at = lo + static_cast<int>(rng() % (hi - lo));
          for (int t = at; t < at + a.span_len; ++t) {
            needle[t] = 1;
            for (int c = 0; c < kDim; ++c)
              k[static_cast<size_t>(t) * kDim + c] =
                  kernels::RoundToBf16(static_cast<float>(a.needle_norm * dir[c] / norm));
          }
        }
        // Dense probabilities (fp64 softmax over fp64 logits, no RoPE) per group head.
        const double scale = 1.0 / std::sqrt(double{kDim});
        std::vector<std::vector<double>> prob(kGroup, std::vector<double>(T));
        std::vector<std::vector<double>> dense(kGroup, std::vector<double>(kDim, 0.0));
        for (int g = 0; g < kGroup; ++g) {
          double mx = -INFINITY;
          for (int j = 0; j < T; ++j) {
            double dot = 0;
            for (int c = 0; c < kDim; ++c)
              dot += double{qg[g * kDim + c]} * k[static_cast<size_t>(j) * kDim + c];
            prob[g][j] = dot * scale;
            mx = std::max(mx, prob[g][j]);
          }
          double z = 0;
          for (int j = 0; j < T; ++j) z += (prob[g][j] = std::exp(prob[g][j] - mx));
          for (int j = 0; j < T; ++j) {
            prob[g][j] /= z;
            for (int c = 0; c < kDim; ++c)
              dense[g][c] += prob[g][j] * v[static_cast<size_t>(j) * kDim + c];
          }
        }
        // Output of attention over a key set, and its error against dense.
        auto attend_err = [&](const std::vector<int32_t>& keys, double* num, double* den) {
          for (int g = 0; g < kGroup; ++g) {
            double z = 0;
            std::vector<double> o(kDim, 0.0);
            for (int32_t j : keys) {
              z += prob[g][j];
              for (int c = 0; c < kDim; ++c)
                o[c] += prob[g][j] * v[static_cast<size_t>(j) * kDim + c];
            }
            for (int c = 0; c < kDim; ++c) {
              const double e = o[c] / z - dense[g][c];
              *num += e * e;
              *den += dense[g][c] * dense[g][c];
            }
          }
        };
        {  // Floor: sink + window + the 8-key blocks covering the needles.
          std::vector<char> in(T, 0);
          for (int t = 0; t < std::min(T, base.n_sink); ++t) in[t] = 1;
          for (int t = std::max(0, pos - base.n_window); t < T; ++t) in[t] = 1;
          for (int t = 0; t < T; ++t) {
            if (!needle[t]) continue;
            const int b0 = base.n_sink + (t - base.n_sink) / 8 * 8;
            for (int u = b0; u < std::min(T, b0 + 8); ++u) in[u] = 1;
          }
          std::vector<int32_t> keys;
          for (int t = 0; t < T; ++t) {
            if (in[t]) keys.push_back(t);
          }
          attend_err(keys, &floor_num, &floor_den);
        }
        for (int o = 0; o < nopt; ++o) {
          const kernels::PruningSpec spec = kernels::PruningSpecForLayer(configs[o], a.layer);
          const kernels::CandidateRange range = kernels::CandidateRangeFor(configs[o], pos);
          kernels::MaskEstimationParams p;
          p.q = qg;
          p.q_token_stride = int64_t{kGroup} * kDim;
          p.q_pos = &pos;
          p.num_q = 1;
          p.group = kGroup;
          p.head_dim = kDim;
          p.k = k.data();
          p.k_token_stride = kDim;
          p.num_kv = T;
          p.range_begin = range.begin;
          p.range_end = range.end;
          p.spec = &spec;
          p.rope = &*rope;
          kernels::MaskEstimationResult r;
          const auto t0 = std::chrono::steady_clock::now();
          if (absl::Status st = kernels::EstimateMaskRef(p, &r); !st.ok()) {
            std::fprintf(stderr, "%s\n", st.ToString().c_str());
            return 1;
          }
          Acc& x = acc[o];
          x.mask_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          std::vector<std::vector<char>> covered(spec.num_stages(), std::vector<char>(T, 0));
          for (int s = 0; s < spec.num_stages(); ++s) {
            for (int32_t b : r.kept[s].starts) {
              for (int32_t t = b; t < std::min(b + r.kept[s].chunk_size, T); ++t) covered[s][t] = 1;
            }
          }
          for (int t = 0; t < T; ++t) {
            if (!needle[t]) continue;
            x.needles += 1;
            x.s1 += covered[0][t];
            x.s2 += covered[std::min(1, spec.num_stages() - 1)][t];
            x.fin += covered[spec.num_stages() - 1][t];
          }
          kernels::SelectionRecallParams sp;
          sp.q = qg;
          sp.group = kGroup;
          sp.head_dim = kDim;
          sp.pos = pos;
          sp.k = k.data();
          sp.k_token_stride = kDim;
          sp.num_kv = T;
          sp.blocks = r.block_starts().data();
          sp.count = r.count();
          sp.block_size = spec.chunk_sizes.back();
          sp.n_sink = configs[o].n_sink;
          sp.n_window = configs[o].n_window;
          sp.rope = nullptr;  // A1's attention has no RoPE
          kernels::SelectionRecall rec;
          if (absl::Status st = kernels::MeasureSelectionRecall(sp, &rec); !st.ok()) {
            std::fprintf(stderr, "%s\n", st.ToString().c_str());
            return 1;
          }
          x.mass += rec.selected;
          x.mass_min = std::min(x.mass_min, rec.selected);
          x.oracle += rec.oracle;
          x.n += 1;
          kernels::BsaKeySet set;
          kernels::BsaKeysForQuery(pos, r.block_starts().data(), r.count(), spec.chunk_sizes.back(),
                                   configs[o].n_sink, configs[o].n_window, /*extend=*/false, &set);
          attend_err(set.keys, &x.err_num, &x.err_den);
        }
      }
    }
    const double floor_err = std::sqrt(floor_num / floor_den);
    for (int o = 0; o < nopt; ++o) {
      const Acc& x = acc[o];
      const double err = std::sqrt(x.err_num / x.err_den);
      const double ms = 1e3 * x.mask_s / x.n;
      std::printf("%-8d %-30s %9.3f %9.3f %9.3f %8.4f %8.4f %8.4f %8.4f %8.4f %8.2f\n", T,
                  a.options[o].c_str(), x.s1 / x.needles, x.s2 / x.needles, x.fin / x.needles,
                  x.mass / x.n, x.mass_min, x.oracle / x.n, err, floor_err, ms);
      char line[512];
      std::snprintf(line, sizeof(line),
                    "%s    {\"T\": %d, \"option\": \"%s\", \"needle_s1\": %.4f, \"needle_s2\": "
                    "%.4f, \"needle_final\": %.4f, \"mass\": %.5f, \"mass_min\": %.5f, "
                    "\"oracle\": %.5f, \"rel_err\": %.5f, \"floor\": %.5f, \"mask_ms\": %.3f}",
                    first_row ? "" : ",\n", T, a.options[o].c_str(), x.s1 / x.needles,
                    x.s2 / x.needles, x.fin / x.needles, x.mass / x.n, x.mass_min, x.oracle / x.n,
                    err, floor_err, ms);
      json += line;
      first_row = false;
    }
    std::fflush(stdout);
  }
  json += "\n  ]\n}\n";
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", a.json.c_str());
      return 1;
    }
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace hipserve::bench

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(hipserve::bench::kUsage, stdout);
      return 0;
    }
  }
  return hipserve::bench::Main(argc, argv);
}
