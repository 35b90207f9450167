// Encode/decode throughput on ~32K tokens of mixed text with SmolLM2's tokenizer.
// Usage: tokenizer_bench [iterations]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/tokenizer/incremental_decoder.h"
#include "coordinator/tokenizer/test_data.h"
#include "coordinator/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  using hipserve::coordinator::IncrementalDecoder;
  using hipserve::coordinator::Tokenizer;
  namespace testing = hipserve::coordinator::testing;
  const int iters = argc > 1 ? std::atoi(argv[1]) : 5;
  auto spec = testing::LoadSmolLM2Spec();
  auto expected = testing::LoadJson("smollm2_expected.json");
  if (!spec.ok() || !expected.ok()) {
    std::fprintf(stderr, "cannot load test data\n");
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::Create(*spec);
  if (!tok.ok()) {
    return 1;
  }
  double create_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // Mixed: the reference strings repeated; unicode: non-Latin scripts; word: one 64 KiB
  // "word" (CJK without spaces), BPE's worst case.
  std::string mixed, unicode, word;
  size_t tokens = 0;
  while (tokens < 32768) {
    for (const auto& c : (*expected)["cases"]) {
      mixed += c["text"].get<std::string>();
      tokens += c["ids"].size();
    }
  }
  while (unicode.size() < 96 * 1024) {
    unicode +=
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE \xD0\xA0\xD1\x83\xD1\x81 "
        "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D \xD8\xA7\xD9\x84\xD8\xB9 \xCE\x95\xCE\xBB ";
  }
  while (word.size() < 64 * 1024) {
    word += "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE4\xB8\xAD\xE6\x96\x87";
  }
  std::printf("create: %.1f ms\n", create_ms);
  std::vector<int32_t> ids;
  for (const auto& [name, corpus] : {std::pair<const char*, const std::string*>{"mixed", &mixed},
                                     {"unicode", &unicode},
                                     {"word", &word}}) {
    double best_ms = 1e30;
    for (int i = 0; i < iters; ++i) {
      auto s = std::chrono::steady_clock::now();
      ids = (*tok)->Encode(*corpus, false, true);
      best_ms = std::min(
          best_ms,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    std::printf("encode %-8s %7zu bytes -> %6zu tokens in %6.1f ms (%.0f tokens/s)\n", name,
                corpus->size(), ids.size(), best_ms, ids.size() / (best_ms / 1e3));
  }
  ids = (*tok)->Encode(mixed, false, true);
  auto s = std::chrono::steady_clock::now();
  IncrementalDecoder dec(**tok);
  size_t out_bytes = 0;
  for (int32_t id : ids) {
    out_bytes += dec.Add(id).size();
  }
  double dec_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count();
  std::printf("incremental decode: %zu tokens -> %zu bytes in %.1f ms\n", ids.size(), out_bytes,
              dec_ms);
  return 0;
}
