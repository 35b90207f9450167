// GgufFile: a parsed GGUF (v2/v3) file: metadata key/values, tensor infos, tensor data.
//
// The file is memory-mapped (or held in memory); tensor data is decoded on request, so
// opening a multi-GB file costs only the header parse. Every offset, count and size read
// from the file is bounds-checked: a truncated or corrupt file yields an InvalidArgument
// (format) or Unimplemented (unsupported feature) status naming the file, the item and the
// numbers, never a crash or an allocation larger than the file justifies.
// Immutable after Open; const methods are thread-safe. Move-only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/loader/file_bytes.h"
#include "worker/loader/tensor.h"

namespace hipserve::worker::loader {

// GGUF metadata value types (gguf_type), numeric values as stored in the file.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufTypeName(GgufType type);

// One metadata value. Scalars live in the field matching their type class; arrays keep their
// element type in `elem_type` and their elements in the vector of that class.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType elem_type = GgufType::kUint8;  // arrays only
  uint64_t u = 0;                         // kUint8/16/32/64, kBool (0/1)
  int64_t i = 0;                          // kInt8/16/32/64
  double f = 0;                           // kFloat32/64
  std::string s;                          // kString
  // Arrays: exactly one of these is filled, by element class (ints: all integer types and
  // bool, uint64 stored bit-for-bit).
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;  // nested arrays
  uint64_t array_size = 0;

  bool IsArray() const { return type == GgufType::kArray; }
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (contiguous) dimension
  uint32_t type = 0;        // GgmlType id
  uint64_t offset = 0;      // relative to the data section
  int64_t n_elements = 0;
  int64_t n_bytes = 0;

  // PyTorch-order shape (reverse of ne): a ggml [in, out] matrix is [out, in].
  std::vector<int64_t> Shape() const { return {ne.rbegin(), ne.rend()}; }
};

class GgufFile {
 public:
  static absl::StatusOr<GgufFile> Open(const std::string& path);
  // Parses bytes already in memory (tests, fuzzing).
  static absl::StatusOr<GgufFile> Parse(FileBytes bytes);

  GgufFile(GgufFile&&) = default;
  GgufFile& operator=(GgufFile&&) = default;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return bytes_.name(); }
  uint64_t file_size() const { return bytes_.size(); }

  // Metadata in file order (keys are unique; duplicates are rejected at parse).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(const std::string& key) const;

  // Typed getters: NotFound when absent, InvalidArgument naming key and actual type when the
  // value has the wrong type or does not fit.
  absl::StatusOr<uint64_t> GetUint(const std::string& key) const;  // any non-negative int
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;    // any integer type
  absl::StatusOr<double> GetFloat(const std::string& key) const;   // float or integer
  absl::StatusOr<bool> GetBool(const std::string& key) const;
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(const std::string& key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;
  // Raw bytes of a tensor (within the file; checked at parse).
  const uint8_t* TensorData(const GgufTensorInfo& info) const;
  // Decodes a tensor to fp32 with its PyTorch-order shape. Unimplemented for unsupported types.
  absl::StatusOr<Tensor> ReadTensor(const std::string& name) const;
  absl::StatusOr<Tensor> ReadTensor(const GgufTensorInfo& info) const;

 private:
  explicit GgufFile(FileBytes bytes) : bytes_(std::move(bytes)) {}
  absl::Status ParseAll();

  FileBytes bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace hipserve::worker::loader
