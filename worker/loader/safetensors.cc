#include "worker/loader/safetensors.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/loader/ggml_types.h"
#include "worker/loader/json_util.h"

namespace hipserve::worker::loader {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit
constexpr size_t kMaxDims = 8;

// Bytes per element, 0 for an unknown dtype.
int DtypeSize(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

absl::Status Corrupt(const std::string& path, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors '", path, "': ", msg));
}

}  // namespace

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(FileBytes bytes, FileBytes::Map(path));
  return Parse(std::move(bytes));
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(FileBytes bytes) {
  SafetensorsFile f(std::move(bytes));
  RETURN_IF_ERROR(f.ParseHeader());
  return f;
}

absl::Status SafetensorsFile::ParseHeader() {
  const std::string& p = path();
  const uint64_t size = bytes_.size();
  if (size < 8) return Corrupt(p, absl::StrCat("truncated: file has ", size, " bytes, < 8"));
  uint64_t n;
  std::memcpy(&n, bytes_.data(), 8);
  if (n > kMaxHeaderBytes) {
    return Corrupt(p, absl::StrCat("header length ", n, " exceeds the 100 MiB limit"));
  }
  if (n > size - 8) {
    return Corrupt(p, absl::StrCat("truncated: header length ", n, " but the file has only ",
                                   size - 8, " bytes after the length field"));
  }
  data_offset_ = 8 + n;
  const uint64_t data_size = size - data_offset_;
  std::string text(reinterpret_cast<const char*>(bytes_.data() + 8), n);
  auto parsed = internal::ParseJsonObject(text, absl::StrCat("safetensors '", p, "' header"));
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& header = *parsed;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return Corrupt(p, "__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(p, absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = absl::StrCat("tensor '", name, "'");
    if (!e.is_object()) return Corrupt(p, absl::StrCat(what, " entry is not an object"));
    SafetensorsInfo info;
    info.name = name;
    auto dt = e.find("dtype");
    if (dt == e.end() || !dt->is_string()) return Corrupt(p, absl::StrCat(what, " has no dtype"));
    info.dtype = dt->get<std::string>();
    const int esize = DtypeSize(info.dtype);
    if (esize == 0) return Corrupt(p, absl::StrCat(what, " has unknown dtype '", info.dtype, "'"));
    auto sh = e.find("shape");
    if (sh == e.end() || !sh->is_array() || sh->size() > kMaxDims) {
      return Corrupt(p, absl::StrCat(what, " has no shape array of <= ", kMaxDims, " dims"));
    }
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) {
        return Corrupt(p, absl::StrCat(what,
                                       " has a shape entry that is not a non-negative "
                                       "integer: ",
                                       d.dump()));
      }
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / v)) {
        return Corrupt(p, absl::StrCat(what, " element count overflows int64"));
      }
      numel *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    auto off = e.find("data_offsets");
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return Corrupt(p, absl::StrCat(what, " has no data_offsets [begin, end]"));
    }
    info.begin = (*off)[0].get<uint64_t>();
    info.end = (*off)[1].get<uint64_t>();
    if (info.begin > info.end) {
      return Corrupt(
          p, absl::StrCat(what, " data_offsets [", info.begin, ", ", info.end, "] are reversed"));
    }
    if (info.end > data_size) {
      return Corrupt(p, absl::StrCat(what, " data ends at byte ", data_offset_ + info.end,
                                     " past file size ", size));
    }
    if (numel > std::numeric_limits<uint64_t>::max() / esize ||
        info.end - info.begin != numel * esize) {
      return Corrupt(p, absl::StrCat(what, " ", info.dtype, " ", ShapeString(info.shape), " needs ",
                                     numel, " x ", esize,
                                     " bytes but data_offsets "
                                     "span ",
                                     info.end - info.begin));
    }
    tensors_.emplace(name, std::move(info));
  }
  return absl::OkStatus();
}

const SafetensorsInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::StatusOr<Tensor> SafetensorsFile::Read(const std::string& name) const {
  const SafetensorsInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("safetensors '", path(), "': tensor '", name, "' not found"));
  }
  uint32_t type;
  if (info->dtype == "F32") {
    type = static_cast<uint32_t>(GgmlType::kF32);
  } else if (info->dtype == "F16") {
    type = static_cast<uint32_t>(GgmlType::kF16);
  } else if (info->dtype == "BF16") {
    type = static_cast<uint32_t>(GgmlType::kBF16);
  } else {
    return absl::UnimplementedError(absl::StrCat("safetensors '", path(), "': tensor '", name,
                                                 "' has dtype ", info->dtype,
                                                 "; supported: F32, F16, BF16"));
  }
  Tensor t;
  t.shape = info->shape;
  const uint64_t bytes = info->end - info->begin;
  t.data.resize(bytes / DtypeSize(info->dtype));  // bounded by the file size
  RETURN_IF_ERROR(DequantizeGgml(type, bytes_.data() + data_offset_ + info->begin, bytes,
                                 static_cast<int64_t>(t.data.size()), t.data.data()));
  return t;
}

absl::StatusOr<SafetensorsModel> SafetensorsModel::OpenFile(const std::string& path) {
  SafetensorsModel m;
  RETURN_IF_ERROR(m.AddFile(path, nullptr));
  return m;
}

absl::Status SafetensorsModel::AddFile(const std::string& path, std::vector<std::string>* added) {
  ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
  const size_t idx = files_.size();
  for (const auto& [name, info] : f.tensors()) {
    auto [it, inserted] = where_.emplace(name, idx);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' appears in both '",
                                                     files_[it->second]->path(), "' and '", path,
                                                     "'"));
    }
    if (added != nullptr) added->push_back(name);
  }
  for (const auto& [name, info] : f.tensors()) total_bytes_ += info.end - info.begin;
  files_.push_back(std::make_unique<SafetensorsFile>(std::move(f)));
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsModel> SafetensorsModel::OpenDir(const std::string& dir) {
  SafetensorsModel m;
  const std::string index_path = absl::StrCat(dir, "/model.safetensors.index.json");
  if (internal::FileExists(index_path)) {
    ASSIGN_OR_RETURN(std::string text, internal::ReadSmallFile(index_path));
    ASSIGN_OR_RETURN(nlohmann::json index, internal::ParseJsonObject(text, index_path));
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": no 'weight_map' object"));
    }
    std::map<std::string, std::string> want;  // tensor -> shard
    std::vector<std::string> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": weight_map['", it.key(), "'] is not a string"));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
          shard.find('\\') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": shard name '", shard, "' for tensor '", it.key(),
                         "' must be a plain file name in the model directory"));
      }
      want[it.key()] = shard;
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    std::sort(shards.begin(), shards.end());
    for (const std::string& shard : shards) {
      RETURN_IF_ERROR(m.AddFile(absl::StrCat(dir, "/", shard), nullptr));
    }
    for (const auto& [name, shard] : want) {
      auto it = m.where_.find(name);
      if (it == m.where_.end() || m.files_[it->second]->path() != absl::StrCat(dir, "/", shard)) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", name,
                                                       "' is mapped to '", shard,
                                                       "' but that shard does not hold it"));
      }
    }
    return m;
  }
  const std::string single = absl::StrCat(dir, "/model.safetensors");
  if (internal::FileExists(single)) {
    RETURN_IF_ERROR(m.AddFile(single, nullptr));
    return m;
  }
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (absl::EndsWith(n, ".safetensors")) files.push_back(n);
    }
    ::closedir(d);
  } else {
    return absl::NotFoundError(absl::StrCat("cannot open directory '", dir, "'"));
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("no *.safetensors files in '", dir, "'"));
  }
  std::sort(files.begin(), files.end());
  for (const std::string& n : files) RETURN_IF_ERROR(m.AddFile(absl::StrCat(dir, "/", n), nullptr));
  return m;
}

const SafetensorsInfo* SafetensorsModel::Find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->Find(name);
}

absl::StatusOr<Tensor> SafetensorsModel::Read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in the safetensors"));
  }
  return files_[it->second]->Read(name);
}

std::vector<std::string> SafetensorsModel::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, idx] : where_) out.push_back(name);
  return out;
}

}  // namespace hipserve::worker::loader
