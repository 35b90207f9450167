// Test-only writers for synthetic GGUF and safetensors files, and a tiny random model that
// can be written in both formats. Not for production use (no validation beyond CHECKs).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "worker/loader/ggml_types.h"
#include "worker/loader/gguf.h"
#include "worker/loader/load.h"

namespace hipserve::worker::loader::testing {

// Little-endian serialisation helpers.
void PutU32(std::string& out, uint32_t v);
void PutU64(std::string& out, uint64_t v);
void PutStr(std::string& out, const std::string& s);  // u64 length + bytes

uint16_t FloatToHalf(float f);  // round to nearest even
uint16_t FloatToBf16(float f);  // round to nearest even
std::string F32Bytes(const std::vector<float>& v);
std::string F16Bytes(const std::vector<float>& v);
std::string Bf16Bytes(const std::vector<float>& v);

class GgufWriter {
 public:
  void SetVersion(uint32_t v) { version_ = v; }
  // Writes general.alignment (uint32) and pads the data to it.
  void SetAlignment(uint32_t a);

  // Metadata, in insertion order. `raw` is the encoded value after the type field.
  void AddRaw(const std::string& key, GgufType type, const std::string& raw);
  void AddU32(const std::string& key, uint32_t v);
  void AddI32(const std::string& key, int32_t v);
  void AddU64(const std::string& key, uint64_t v);
  void AddF32(const std::string& key, float v);
  void AddF64(const std::string& key, double v);
  void AddBool(const std::string& key, bool v);
  void AddString(const std::string& key, const std::string& v);
  void AddStringArray(const std::string& key, const std::vector<std::string>& v);
  void AddI32Array(const std::string& key, const std::vector<int32_t>& v);
  void AddF32Array(const std::string& key, const std::vector<float>& v);

  // `ne` in ggml order (innermost first); `data` must be GgmlBytes(type, numel) bytes.
  void AddTensor(const std::string& name, std::vector<int64_t> ne, GgmlType type, std::string data);
  // Convenience: PyTorch-order shape, fp32 values stored as `type` (F32, F16 or BF16).
  void AddFloatTensor(const std::string& name, const Tensor& t, GgmlType type = GgmlType::kF32);

  std::string Build() const;

 private:
  struct TensorEntry {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
    std::string data;
  };
  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  std::vector<std::string> kv_;  // encoded key/type/value records
  std::vector<TensorEntry> tensors_;
};

struct StEntry {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  std::string data;
};
std::string BuildSafetensors(const std::vector<StEntry>& entries,
                             const std::map<std::string, std::string>& metadata = {});
// F32/F16/BF16 entry from a Tensor.
StEntry StFloat(const std::string& name, const Tensor& t, const std::string& dtype = "F32");

void WriteFile(const std::string& path, const std::string& bytes);
std::string ReadFile(const std::string& path);
// A fresh empty directory under TEST_TMPDIR or /tmp.
std::string MakeTempDir(const std::string& tag);

// A tiny random Llama-family model in canonical (HF) layout, values chosen so that fp16
// rounding is exact (multiples of 1/64 in [-2, 2]).
struct TinyModelOptions {
  std::string arch = "llama";  // "llama" or "qwen2" (adds q/k/v biases)
  int64_t vocab = 40, hidden = 16, intermediate = 24, layers = 2, heads = 4, kv_heads = 2;
  bool tie = false;
  uint64_t seed = 1;
};
LoadedModel MakeTinyModel(const TinyModelOptions& o);

// Serialises a model as llama.cpp would: Q/K rows permuted for llama arch, tokenizer and
// config in metadata. `type` for the 2-D weights (F32, F16, BF16).
std::string TinyModelToGguf(const LoadedModel& m, GgmlType type = GgmlType::kF32);
// Writes config.json, tokenizer.json, tokenizer_config.json and `shards` safetensors files
// (with an index when shards > 1) into `dir`.
void TinyModelToHfDir(const LoadedModel& m, const std::string& dir, int shards = 1,
                      const std::string& dtype = "F32");

}  // namespace hipserve::worker::loader::testing
