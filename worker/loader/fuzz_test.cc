// Seeded mutation fuzzing of the GGUF / safetensors / config / tokenizer parsers.
//
// Seeds: the files in tests/data/loader (small synthetic models; regenerate them with
// HIPSERVE_LOADER_WRITE_CORPUS=1) plus the same seeds generated in memory. Every mutated input
// must yield a Status (never a crash, hang or huge allocation); truncations before the end of
// the last tensor's data must be errors. Deterministic: fixed seeds; HIPSERVE_FUZZ_ITERATIONS
// scales the run (default keeps CI to a few seconds); build with -fsanitize=address,undefined
// to catch out-of-bounds reads. A crashing input found later belongs in the corpus as
// crash-<name>.<ext> so that it stays tested.
#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "gtest/gtest.h"
#include "worker/loader/gguf.h"
#include "worker/loader/load.h"
#include "worker/loader/model_config.h"
#include "worker/loader/safetensors.h"
#include "worker/loader/testing/writers.h"
#include "worker/loader/tokenizer_data.h"

#ifndef HIPSERVE_LOADER_CORPUS_DIR
#error "HIPSERVE_LOADER_CORPUS_DIR must name tests/data/loader"
#endif

namespace hipserve::worker::loader {
namespace {

using testing::GgufWriter;

// ---- Seeds ------------------------------------------------------------------------------

std::string QuantTypesGguf() {
  GgufWriter w;
  w.SetAlignment(64);
  w.AddString("general.architecture", "llama");
  w.AddStringArray("general.tags", {"a", "bc"});
  w.AddI32Array("ints", {1, -2, 3});
  w.AddF32Array("floats", {0.5f});
  w.AddF64("f64", 2.5);
  w.AddBool("flag", true);
  std::mt19937_64 rng(7);
  auto bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    // Keep fp16 scales finite so a decoded tensor is meaningful.
    return s;
  };
  w.AddTensor("q4_0", {64, 1}, GgmlType::kQ4_0, bytes(36));
  w.AddTensor("q4_1", {32, 2}, GgmlType::kQ4_1, bytes(40));
  w.AddTensor("q8_0", {32, 1}, GgmlType::kQ8_0, bytes(34));
  w.AddTensor("q6_k", {256}, GgmlType::kQ6_K, bytes(210));
  w.AddTensor("bf16", {3, 2}, GgmlType::kBF16, bytes(12));
  w.AddTensor("f32", {4}, GgmlType::kF32, bytes(16));
  return w.Build();
}

testing::TinyModelOptions TinyOptions(const std::string& arch) {
  testing::TinyModelOptions o;
  o.arch = arch;
  o.vocab = 36;
  o.hidden = 8;
  o.intermediate = 8;
  o.layers = 1;
  o.heads = 2;
  o.kv_heads = 1;
  return o;
}

// name -> bytes
std::map<std::string, std::string> GenerateSeeds() {
  std::map<std::string, std::string> seeds;
  seeds["tiny_llama_f16.gguf"] =
      testing::TinyModelToGguf(testing::MakeTinyModel(TinyOptions("llama")), GgmlType::kF16);
  seeds["quant_types.gguf"] = QuantTypesGguf();
  const LoadedModel qwen = testing::MakeTinyModel(TinyOptions("qwen2"));
  const std::string dir = testing::MakeTempDir("fuzz_seed");
  testing::TinyModelToHfDir(qwen, dir, 1, "BF16");
  seeds["tiny_qwen2_bf16.safetensors"] = testing::ReadFile(dir + "/model.safetensors");
  seeds["tiny_qwen2_config.json"] = testing::ReadFile(dir + "/config.json");
  seeds["tiny_qwen2_tokenizer.json"] = testing::ReadFile(dir + "/tokenizer.json");
  return seeds;
}

std::map<std::string, std::string> CorpusFiles() {
  std::map<std::string, std::string> out;
  if (DIR* d = ::opendir(HIPSERVE_LOADER_CORPUS_DIR)) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n[0] == '.' || absl::EndsWith(n, ".md")) continue;
      out[n] = testing::ReadFile(absl::StrCat(HIPSERVE_LOADER_CORPUS_DIR, "/", n));
    }
    ::closedir(d);
  }
  return out;
}

// ---- Targets ----------------------------------------------------------------------------

// Runs every parser that applies to a file of this name; returns whether the input was
// accepted by the first stage (the format parser).
bool RunTarget(const std::string& name, const std::string& bytes) {
  if (absl::EndsWith(name, ".gguf")) {
    auto g = GgufFile::Parse(FileBytes::FromString(bytes, name));
    if (!g.ok()) return false;
    for (const GgufTensorInfo& t : g->tensors()) {
      auto r = g->ReadTensor(t);
      if (r.ok()) {
        EXPECT_EQ(static_cast<int64_t>(r->data.size()), t.n_elements);
      }
    }
    (void)ConfigFromGguf(*g);
    (void)TokenizerFromGguf(*g);
    (void)LoadModelFromGguf(*g);
    return true;
  }
  if (absl::EndsWith(name, ".safetensors")) {
    auto f = SafetensorsFile::Parse(FileBytes::FromString(bytes, name));
    if (!f.ok()) return false;
    for (const auto& [n, info] : f->tensors()) (void)f->Read(n);
    return true;
  }
  if (absl::StrContains(name, "tokenizer")) {
    return TokenizerFromHfJson(bytes, "", "", "").ok();
  }
  if (absl::StrContains(name, "config")) return ConfigFromHfJson(bytes).ok();
  ADD_FAILURE() << "no target for corpus file " << name;
  return false;
}

// Byte offset where the file's payload ends: truncating before it must fail.
uint64_t RequiredLength(const std::string& name, const std::string& bytes) {
  if (absl::EndsWith(name, ".gguf")) {
    auto g = GgufFile::Parse(FileBytes::FromString(bytes, name));
    if (!g.ok()) return 0;
    uint64_t end = 24;
    for (const auto& t : g->tensors()) {
      end = std::max<uint64_t>(end, g->data_offset() + t.offset + t.n_bytes);
    }
    return end;
  }
  if (absl::EndsWith(name, ".safetensors")) {
    auto f = SafetensorsFile::Parse(FileBytes::FromString(bytes, name));
    if (!f.ok() || bytes.size() < 8) return 0;
    uint64_t header;
    std::memcpy(&header, bytes.data(), 8);
    uint64_t end = 8 + header;
    for (const auto& [n, info] : f->tensors()) end = std::max(end, 8 + header + info.end);
    return end;
  }
  return 0;  // JSON: a truncated document is invalid, but we only check for no crash
}

// ---- Mutations --------------------------------------------------------------------------

std::string Mutate(const std::string& in, std::mt19937_64& rng) {
  static const uint64_t kInteresting[] = {0,          1,          2,          0x7F,
                                          0x80,       0xFF,       0xFFFF,     0x7FFFFFFF,
                                          0x80000000, 0xFFFFFFFF, 1ull << 32, 1ull << 40,
                                          1ull << 62, ~0ull >> 1, 1ull << 63, ~0ull};
  std::string s = in;
  const int n_mut = 1 + static_cast<int>(rng() % 3);
  for (int m = 0; m < n_mut && !s.empty(); ++m) {
    const size_t pos = rng() % s.size();
    switch (rng() % 7) {
      case 0:  // truncate
        s.resize(pos);
        break;
      case 1:  // random bytes
        for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
          s[rng() % s.size()] = static_cast<char>(rng());
        }
        break;
      case 2: {  // interesting u64
        const uint64_t v = kInteresting[rng() % std::size(kInteresting)];
        for (size_t k = 0; k < 8 && pos + k < s.size(); ++k)
          s[pos + k] = static_cast<char>(v >> (8 * k));
        break;
      }
      case 3: {  // interesting u32
        const uint32_t v = static_cast<uint32_t>(kInteresting[rng() % std::size(kInteresting)]);
        for (size_t k = 0; k < 4 && pos + k < s.size(); ++k)
          s[pos + k] = static_cast<char>(v >> (8 * k));
        break;
      }
      case 4:  // delete a span
        s.erase(pos, 1 + rng() % 16);
        break;
      case 5:  // insert random bytes
        s.insert(pos, std::string(1 + rng() % 16, static_cast<char>(rng())));
        break;
      case 6: {  // bit flip
        s[pos] = static_cast<char>(s[pos] ^ (1 << (rng() % 8)));
        break;
      }
    }
  }
  return s;
}

int Iterations() {
  const char* env = std::getenv("HIPSERVE_FUZZ_ITERATIONS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 10000;
}

class LoaderFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override { common::SetMinLogLevel(common::LogLevel::kError); }
  void TearDown() override { common::SetMinLogLevel(common::LogLevel::kInfo); }
};

TEST_F(LoaderFuzzTest, CorpusIsPresentAndValid) {
  if (std::getenv("HIPSERVE_LOADER_WRITE_CORPUS") != nullptr) {
    for (const auto& [name, bytes] : GenerateSeeds()) {
      testing::WriteFile(absl::StrCat(HIPSERVE_LOADER_CORPUS_DIR, "/", name), bytes);
    }
  }
  const auto corpus = CorpusFiles();
  for (const auto& [name, bytes] : GenerateSeeds()) {
    ASSERT_TRUE(corpus.count(name)) << name << " missing from " << HIPSERVE_LOADER_CORPUS_DIR
                                    << "; regenerate with HIPSERVE_LOADER_WRITE_CORPUS=1";
  }
  for (const auto& [name, bytes] : corpus) {
    if (absl::StartsWith(name, "crash-")) continue;  // regression inputs, need not parse
    EXPECT_TRUE(RunTarget(name, bytes)) << name << " no longer parses";
  }
}

TEST_F(LoaderFuzzTest, TruncationAtEveryStep) {
  auto seeds = GenerateSeeds();
  for (const auto& [name, bytes] : CorpusFiles()) seeds[name] = bytes;
  for (const auto& [name, bytes] : seeds) {
    const uint64_t required = RequiredLength(name, bytes);
    const size_t step = std::max<size_t>(1, bytes.size() / 400);
    for (size_t len = 0; len < bytes.size(); len += (len < 512 ? 1 : step)) {
      const bool ok = RunTarget(name, bytes.substr(0, len));
      if (len < required) {
        EXPECT_FALSE(ok) << name << " truncated to " << len << " of " << bytes.size()
                         << " bytes was accepted";
      }
    }
  }
}

TEST_F(LoaderFuzzTest, RandomMutations) {
  auto seeds = GenerateSeeds();
  for (const auto& [name, bytes] : CorpusFiles()) seeds[name] = bytes;
  const int iters = Iterations();
  const bool verbose = std::getenv("HIPSERVE_FUZZ_VERBOSE") != nullptr;
  for (const auto& [name, bytes] : seeds) {
    int accepted = 0, rejected = 0;
    for (int it = 0; it < iters; ++it) {
      std::mt19937_64 rng(std::hash<std::string>()(name) ^ (0x9E3779B97F4A7C15ull * (it + 1)));
      if (verbose) fprintf(stderr, "%s iteration %d\n", name.c_str(), it);
      (RunTarget(name, Mutate(bytes, rng)) ? accepted : rejected)++;
    }
    // Both outcomes must occur: mutations inside tensor data are harmless, header damage is not.
    EXPECT_GT(rejected, iters / 20) << name;
    if (!absl::StartsWith(name, "crash-")) {
      EXPECT_GT(accepted, 0) << name;
    }
  }
}

}  // namespace
}  // namespace hipserve::worker::loader
