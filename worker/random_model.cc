#include "worker/random_model.h"

#include <atomic>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/parallel_for.h"
#include "kernels/dtype/bf16.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace hipserve::worker {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finalizer: a bijective 64-bit mix, identical on every platform.
inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Near-normal value with unit variance: Irwin-Hall sum of the four 16-bit parts of a random
// 64-bit word (mean 2 * 65535.5 - 2, variance 4 * (65536^2 - 1) / 12).
inline float NormalIsh(uint64_t r) {
  const int64_t s = static_cast<int64_t>(r & 0xFFFF) + static_cast<int64_t>((r >> 16) & 0xFFFF) +
                    static_cast<int64_t>((r >> 32) & 0xFFFF) + static_cast<int64_t>(r >> 48);
  constexpr double kMean = 2.0 * 65535.0;
  constexpr double kInvStd = 1.0 / 37837.2262;  // 1 / sqrt(4 * (65536^2 - 1) / 12)
  return static_cast<float>((static_cast<double>(s) - kMean) * kInvStd);
}

// One tensor to fill: values scale * NormalIsh(Mix(key + (i + 1) * golden)), or all `scale`
// when constant (norm weights).
struct TensorJob {
  std::vector<float>* data;
  int64_t size;
  uint64_t key;
  float scale;
  bool constant;
};

// Fixed tensor ids (the RNG stream of a tensor never depends on the model's other sizes).
enum : uint64_t { kTokenEmbd = 1, kLmHead = 2, kOutputNorm = 3, kLayerBase = 1000 };
enum : uint64_t { kAttnNorm, kWq, kWk, kWv, kWo, kFfnNorm, kGate, kUp, kDown, kPerLayer = 16 };

ModelDims Llama31_8B() {
  ModelDims d;
  d.arch = "llama";
  d.vocab_size = 128256;
  d.hidden = 4096;
  d.intermediate = 14336;
  d.num_layers = 32;
  d.num_heads = 32;
  d.num_kv_heads = 8;
  d.head_dim = 128;
  d.rms_eps = 1e-5f;
  // As the HF loader fills it from Llama-3.1-8B's config.json (model_source.cc FromLoaded).
  d.rope.theta = 500000.f;
  d.rope.scaling = kernels::RopeScaling::kLlama3;
  d.rope.factor = 8.f;
  d.rope.low_freq_factor = 1.f;
  d.rope.high_freq_factor = 4.f;
  d.rope.original_max_position = 8192;
  d.max_context = 131072;
  d.qkv_bias = false;
  d.tie_word_embeddings = false;
  return d;
}

struct Preset {
  const char* name;
  ModelDims (*make)();
};

const Preset kPresets[] = {
    {"llama-3.1-8b", [] { return Llama31_8B(); }},
    {"llama-3.1-8b-2l",
     [] {
       ModelDims d = Llama31_8B();
       d.num_layers = 2;
       return d;
     }},
    {"tiny-llama3",
     [] {
       ModelDims d = Llama31_8B();  // RoPE, eps, context of the 8B
       d.vocab_size = 512;          // ids past the byte tokenizer's 259 exist, as in the 8B
       d.hidden = 128;
       d.intermediate = 384;
       d.num_layers = 4;
       d.num_heads = 4;
       d.num_kv_heads = 2;
       d.head_dim = 32;
       return d;
     }},
};

// Sizes v to n values. First touch (page faults and zeroing) dominates the generation of large
// models, so large tensors ask for transparent huge pages first (where THP is "madvise").
void Allocate(std::vector<float>* v, int64_t n) {
#ifdef __linux__
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (n * static_cast<int64_t>(sizeof(float)) >= int64_t{16} << 20) {
    v->reserve(n);  // large: mmap'ed by malloc, not touched yet
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(v->data()) + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(v->data() + n) & ~(kHuge - 1);
    if (end > begin) {
      madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint only
    }
  }
#endif
  v->resize(n);
}

}  // namespace

std::vector<std::string> RandomModelPresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

absl::StatusOr<ModelDims> RandomModelDims(absl::string_view preset) {
  for (const Preset& p : kPresets) {
    if (preset == p.name) {
      ModelDims d = p.make();
      d.name = absl::StrCat(kRandomModelPrefix, p.name);
      return d;
    }
  }
  std::vector<std::string> known;
  for (const Preset& p : kPresets) known.push_back(absl::StrCat(kRandomModelPrefix, p.name));
  return absl::InvalidArgumentError(absl::StrCat("unknown random model '", kRandomModelPrefix,
                                                 preset, "'; known: ", absl::StrJoin(known, ", ")));
}

absl::StatusOr<ModelWeights> MakeRandomWeights(const ModelDims& d,
                                               const RandomWeightsOptions& options) {
  if (d.vocab_size <= 0 || d.hidden <= 0 || d.intermediate <= 0 || d.num_layers <= 0 ||
      d.num_heads <= 0 || d.num_kv_heads <= 0 || d.head_dim <= 0 || d.head_dim % 2 != 0 ||
      d.num_heads % d.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        "random model: all sizes must be > 0, head_dim even, num_heads % num_kv_heads == 0");
  }
  if (d.qkv_bias || d.tie_word_embeddings) {
    return absl::InvalidArgumentError(
        "random model: Llama layout only (no qkv_bias, untied LM head)");
  }
  const auto start = std::chrono::steady_clock::now();
  ModelWeights w;
  w.dims = d;
  w.vocab_begin = 0;
  w.vocab_end = d.vocab_size;
  w.layers.resize(d.num_layers);

  const int64_t h = d.hidden, inter = d.intermediate, vocab = d.vocab_size;
  const int64_t q_rows = int64_t{d.num_heads} * d.head_dim;
  const int64_t kv_rows = int64_t{d.num_kv_heads} * d.head_dim;
  const float inv_h = 1.f / std::sqrt(static_cast<float>(h));
  std::vector<TensorJob> tensors;
  auto add = [&](std::vector<float>* v, int64_t size, uint64_t id, float scale, bool constant) {
    tensors.push_back({v, size, Mix(Mix(options.seed) ^ Mix(id * kGolden + 1)), scale, constant});
  };
  add(&w.token_embd, vocab * h, kTokenEmbd, 1.f, false);
  add(&w.lm_head, vocab * h, kLmHead, 3.f * inv_h, false);
  add(&w.output_norm, h, kOutputNorm, 1.f, true);
  for (int i = 0; i < d.num_layers; ++i) {
    LayerWeights& l = w.layers[i];
    const uint64_t base = kLayerBase + uint64_t(i) * kPerLayer;
    add(&l.attn_norm, h, base + kAttnNorm, 1.f, true);
    add(&l.wq, q_rows * h, base + kWq, inv_h, false);
    add(&l.wk, kv_rows * h, base + kWk, inv_h, false);
    add(&l.wv, kv_rows * h, base + kWv, inv_h, false);
    add(&l.wo, h * q_rows, base + kWo, 0.5f / std::sqrt(static_cast<float>(q_rows)), false);
    add(&l.ffn_norm, h, base + kFfnNorm, 1.f, true);
    add(&l.w_gate, inter * h, base + kGate, inv_h, false);
    add(&l.w_up, inter * h, base + kUp, inv_h, false);
    add(&l.w_down, h * inter, base + kDown, 0.5f / std::sqrt(static_cast<float>(inter)), false);
  }
  int64_t total = 0;
  for (const TensorJob& t : tensors) total += t.size;
  const bool large = total >= (int64_t{1} << 28);  // ~1 GB of fp32: worth progress lines
  const int threads = options.threads == 1 ? 1 : common::ResolveThreads(options.threads);
  const int pool_threads = threads > 1 ? common::SpinPool::Shared().threads() : 1;
  if (large) {
    LOG(INFO) << "generating " << d.name << ": " << total << " random weights ("
              << (total * 4.0 / (1 << 30)) << " GiB fp32), seed " << options.seed;
  }

  // Allocation (zero fill and page faults) in parallel, one tensor per item.
  absl::Status st = common::ParallelFor(static_cast<int>(tensors.size()), threads, [&](int i) {
    Allocate(tensors[i].data, tensors[i].size);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (large) {
    LOG(INFO) << "allocated in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
              << " s";
  }

  // Values in chunks of every tensor: a chunk's values depend only on (key, index).
  constexpr int64_t kChunk = int64_t{1} << 20;
  struct Chunk {
    int tensor;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (int t = 0; t < static_cast<int>(tensors.size()); ++t) {
    for (int64_t b = 0; b < tensors[t].size; b += kChunk) {
      chunks.push_back({t, b, std::min(tensors[t].size, b + kChunk)});
    }
  }
  std::atomic<int64_t> done{0};
  st = common::ParallelFor(static_cast<int>(chunks.size()), threads, [&](int c) {
    const Chunk& ch = chunks[c];
    const TensorJob& t = tensors[ch.tensor];
    float* out = t.data->data();
    if (t.constant) {
      const float v = kernels::RoundToBf16(t.scale);
      for (int64_t i = ch.begin; i < ch.end; ++i) out[i] = v;
    } else {
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        out[i] = t.scale * NormalIsh(Mix(t.key + static_cast<uint64_t>(i + 1) * kGolden));
      }
      kernels::RoundToBf16InPlace(out + ch.begin, ch.end - ch.begin);
    }
    if (large) {
      const int64_t n = ch.end - ch.begin;
      const int64_t after = done.fetch_add(n) + n;
      if ((after - n) * 10 / total != after * 10 / total) {
        LOG(INFO) << "random weights: " << after * 100 / total << "%";
      }
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (large) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    LOG(INFO) << "generated " << d.name << " in " << s << " s (" << pool_threads << " threads)";
  }
  return w;
}

absl::StatusOr<ModelWeights> MakeRandomModel(absl::string_view preset,
                                             const RandomWeightsOptions& options) {
  absl::StatusOr<ModelDims> dims = RandomModelDims(preset);
  if (!dims.ok()) return dims.status();
  dims->name = absl::StrCat(dims->name, "/seed", options.seed);
  return MakeRandomWeights(*dims, options);
}

}  // namespace hipserve::worker
