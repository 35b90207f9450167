// Safetensors readers: one file (SafetensorsFile) or a set of shards named by
// model.safetensors.index.json, or all *.safetensors in a directory (SafetensorsModel).
//
// Format: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data; offsets are relative to the first byte after the header.
// Files are memory-mapped; every header field is validated against the file size (offsets in
// range, end - begin == numel * dtype size, no overflow). Errors are InvalidArgument (corrupt),
// Unimplemented (dtype other than F32/F16/BF16 on read) or NotFound, naming file and tensor.
// Immutable after Open; const methods are thread-safe. Move-only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/loader/file_bytes.h"
#include "worker/loader/tensor.h"

namespace hipserve::worker::loader {

struct SafetensorsInfo {
  std::string name;
  std::string dtype;            // as in the header: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;   // outermost first
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  static absl::StatusOr<SafetensorsFile> Parse(FileBytes bytes);

  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;

  const std::string& path() const { return bytes_.name(); }
  // Tensor infos, sorted by name.
  const std::map<std::string, SafetensorsInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsInfo* Find(const std::string& name) const;
  // Decodes F32/F16/BF16 to fp32.
  absl::StatusOr<Tensor> Read(const std::string& name) const;

 private:
  explicit SafetensorsFile(FileBytes bytes) : bytes_(std::move(bytes)) {}
  absl::Status ParseHeader();

  FileBytes bytes_;
  uint64_t data_offset_ = 0;
  std::map<std::string, SafetensorsInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model, possibly spread across shards.
class SafetensorsModel {
 public:
  // `dir` containing model.safetensors.index.json (sharded), model.safetensors, or otherwise
  // every *.safetensors file in it. A tensor named by two shards is an error; so is an index
  // entry whose shard does not hold it, or a shard name with a path separator.
  static absl::StatusOr<SafetensorsModel> OpenDir(const std::string& dir);
  // One file.
  static absl::StatusOr<SafetensorsModel> OpenFile(const std::string& path);

  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsInfo* Find(const std::string& name) const;
  absl::StatusOr<Tensor> Read(const std::string& name) const;
  std::vector<std::string> Names() const;
  size_t num_files() const { return files_.size(); }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  absl::Status AddFile(const std::string& path, std::vector<std::string>* added);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  uint64_t total_bytes_ = 0;
};

}  // namespace hipserve::worker::loader
