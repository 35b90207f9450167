#include "worker/loader/file_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/loader/tensor.h"

namespace hipserve::worker::loader {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

namespace {
absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}
}  // namespace

absl::StatusOr<FileBytes> FileBytes::Map(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open '", path, "'"));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat("cannot stat '", path, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  FileBytes out;
  out.name_ = path;
  out.size_ = static_cast<size_t>(st.st_size);
  if (out.size_ > 0) {
    void* p = ::mmap(nullptr, out.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, absl::StrCat("cannot mmap '", path, "' (", st.st_size, " bytes)"));
    }
    out.mapping_ = p;
    out.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return out;
}

FileBytes FileBytes::FromString(std::string bytes, std::string name) {
  FileBytes out;
  out.buffer_ = std::move(bytes);
  out.data_ = reinterpret_cast<const uint8_t*>(out.buffer_.data());
  out.size_ = out.buffer_.size();
  out.name_ = std::move(name);
  return out;
}

FileBytes::FileBytes(FileBytes&& other) noexcept { *this = std::move(other); }

FileBytes& FileBytes::operator=(FileBytes&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  mapping_ = std::exchange(other.mapping_, nullptr);
  size_ = std::exchange(other.size_, 0);
  name_ = std::move(other.name_);
  if (mapping_ != nullptr) {
    data_ = static_cast<const uint8_t*>(mapping_);
  } else {
    buffer_ = std::move(other.buffer_);
    data_ = reinterpret_cast<const uint8_t*>(buffer_.data());
  }
  other.data_ = nullptr;
  return *this;
}

FileBytes::~FileBytes() { Reset(); }

void FileBytes::Reset() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
  mapping_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  buffer_.clear();
}

}  // namespace hipserve::worker::loader
