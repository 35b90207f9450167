// FileBytes: read-only bytes of a whole file, memory-mapped, or an in-memory copy (tests).
//
// Owns its mapping or buffer; move-only; immutable after construction, so const access from
// several threads is safe. Pointers from data() live as long as the FileBytes object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace hipserve::worker::loader {

class FileBytes {
 public:
  // Maps `path` read-only. NotFound / PermissionDenied / Internal with the path and errno text.
  static absl::StatusOr<FileBytes> Map(const std::string& path);
  // Takes ownership of `bytes` (no file behind it); `name` is used in error messages.
  static FileBytes FromString(std::string bytes, std::string name = "<memory>");

  FileBytes() = default;
  FileBytes(FileBytes&& other) noexcept;
  FileBytes& operator=(FileBytes&& other) noexcept;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  void Reset();

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when mmap'ed
  std::string buffer_;       // owner when FromString
  std::string name_;
};

}  // namespace hipserve::worker::loader
