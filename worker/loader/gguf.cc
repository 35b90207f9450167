#include "worker/loader/gguf.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/loader/ggml_types.h"

namespace hipserve::worker::loader {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxAlignment = 1ull << 30;

// Size in the file of a scalar of `type`, 0 for string/array/unknown.
uint64_t ScalarSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool KnownType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

// Bounds-checked little-endian cursor over the file bytes.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, std::string file)
      : data_(data), size_(size), file_(std::move(file)) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Error(const std::string& msg) const {
    return absl::InvalidArgumentError(absl::StrCat("GGUF '", file_, "': ", msg));
  }

  absl::Status Need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      return Error(absl::StrCat("truncated: ", what, " needs ", n, " bytes at offset ", pos_,
                                " but the file has ", size_, " bytes"));
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(const std::string& what) {
    RETURN_IF_ERROR(Need(sizeof(T), what));
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string> ReadString(const std::string& what) {
    ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(absl::StrCat("length of ", what)));
    if (len > remaining()) {
      return Error(absl::StrCat("truncated: ", what, " has length ", len, " at offset ", pos_,
                                " but only ", remaining(), " bytes remain"));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string file_;
};

absl::StatusOr<GgufValue> ReadValue(Reader& r, GgufType type, const std::string& key, int depth);

absl::Status ReadScalarInto(Reader& r, GgufType type, const std::string& what, GgufValue& v) {
  switch (type) {
    case GgufType::kUint8: {
      ASSIGN_OR_RETURN(v.u, r.Read<uint8_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kInt8: {
      ASSIGN_OR_RETURN(v.i, r.Read<int8_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kUint16: {
      ASSIGN_OR_RETURN(v.u, r.Read<uint16_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kInt16: {
      ASSIGN_OR_RETURN(v.i, r.Read<int16_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kUint32: {
      ASSIGN_OR_RETURN(v.u, r.Read<uint32_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kInt32: {
      ASSIGN_OR_RETURN(v.i, r.Read<int32_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kUint64: {
      ASSIGN_OR_RETURN(v.u, r.Read<uint64_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kInt64: {
      ASSIGN_OR_RETURN(v.i, r.Read<int64_t>(what));
      return absl::OkStatus();
    }
    case GgufType::kFloat32: {
      ASSIGN_OR_RETURN(v.f, r.Read<float>(what));
      return absl::OkStatus();
    }
    case GgufType::kFloat64: {
      ASSIGN_OR_RETURN(v.f, r.Read<double>(what));
      return absl::OkStatus();
    }
    case GgufType::kBool: {
      ASSIGN_OR_RETURN(uint8_t b, r.Read<uint8_t>(what));
      if (b > 1) return r.Error(absl::StrCat(what, ": bool value ", int{b}, " is not 0 or 1"));
      v.u = b;
      return absl::OkStatus();
    }
    case GgufType::kString: {
      ASSIGN_OR_RETURN(v.s, r.ReadString(what));
      return absl::OkStatus();
    }
    case GgufType::kArray:
      break;
  }
  return r.Error(absl::StrCat(what, ": not a scalar type"));
}

absl::StatusOr<GgufValue> ReadArray(Reader& r, const std::string& key, int depth) {
  GgufValue v;
  v.type = GgufType::kArray;
  if (depth >= kMaxArrayDepth) {
    return r.Error(absl::StrCat("key '", key, "': arrays nested deeper than ", kMaxArrayDepth));
  }
  ASSIGN_OR_RETURN(uint32_t et, r.Read<uint32_t>(absl::StrCat("array type of key '", key, "'")));
  if (!KnownType(et)) {
    return r.Error(absl::StrCat("key '", key, "': unknown array element type ", et));
  }
  v.elem_type = static_cast<GgufType>(et);
  ASSIGN_OR_RETURN(uint64_t n, r.Read<uint64_t>(absl::StrCat("array size of key '", key, "'")));
  // Each element takes at least this many bytes, so a count the file cannot hold is rejected
  // before anything is allocated.
  uint64_t min_elem = ScalarSize(v.elem_type);
  if (v.elem_type == GgufType::kString) min_elem = 8;
  if (v.elem_type == GgufType::kArray) min_elem = 12;
  if (n > r.remaining() / min_elem) {
    return r.Error(absl::StrCat(
        "key '", key, "': array of ", n, " ", GgufTypeName(v.elem_type),
        " elements needs at least ",
        n > std::numeric_limits<uint64_t>::max() / min_elem ? std::string("more than 2^64")
                                                            : absl::StrCat(n * min_elem),
        " bytes at offset ", r.pos(), " but only ", r.remaining(), " remain"));
  }
  v.array_size = n;
  const std::string what = absl::StrCat("element of key '", key, "'");
  switch (v.elem_type) {
    case GgufType::kString:
      v.strings.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        ASSIGN_OR_RETURN(std::string s, r.ReadString(absl::StrCat(what, " #", k)));
        v.strings.push_back(std::move(s));
      }
      break;
    case GgufType::kArray:
      v.arrays.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        ASSIGN_OR_RETURN(GgufValue e, ReadValue(r, GgufType::kArray, key, depth + 1));
        v.arrays.push_back(std::move(e));
      }
      break;
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      v.floats.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        GgufValue e;
        RETURN_IF_ERROR(ReadScalarInto(r, v.elem_type, what, e));
        v.floats.push_back(e.f);
      }
      break;
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kBool:
      v.ints.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        GgufValue e;
        e.type = v.elem_type;
        RETURN_IF_ERROR(ReadScalarInto(r, v.elem_type, what, e));
        v.ints.push_back(e.i != 0 ? e.i : static_cast<int64_t>(e.u));
      }
      break;
  }
  return v;
}

absl::StatusOr<GgufValue> ReadValue(Reader& r, GgufType type, const std::string& key, int depth) {
  if (type == GgufType::kArray) return ReadArray(r, key, depth);
  GgufValue v;
  v.type = type;
  RETURN_IF_ERROR(ReadScalarInto(r, type, absl::StrCat("value of key '", key, "'"), v));
  return v;
}

bool IsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64 || t == GgufType::kBool;
}
bool IsSigned(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}

}  // namespace

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "unknown";
}

absl::StatusOr<GgufFile> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(FileBytes bytes, FileBytes::Map(path));
  return Parse(std::move(bytes));
}

absl::StatusOr<GgufFile> GgufFile::Parse(FileBytes bytes) {
  GgufFile f(std::move(bytes));
  RETURN_IF_ERROR(f.ParseAll());
  return f;
}

absl::Status GgufFile::ParseAll() {
  Reader r(bytes_.data(), bytes_.size(), bytes_.name());
  ASSIGN_OR_RETURN(uint32_t magic, r.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return r.Error(absl::StrCat("bad magic 0x", absl::Hex(magic, absl::kZeroPad8),
                                " (expected \"GGUF\"); not a GGUF file"));
  }
  ASSIGN_OR_RETURN(version_, r.Read<uint32_t>("version"));
  if (version_ == 1) {
    return absl::UnimplementedError(
        absl::StrCat("GGUF '", path(), "': version 1 is not supported (only 2 and 3)"));
  }
  if (version_ != 2 && version_ != 3) {
    if ((version_ & 0xFFFF) == 0) {
      return absl::UnimplementedError(
          absl::StrCat("GGUF '", path(), "': version field 0x", absl::Hex(version_),
                       " looks byte-swapped; big-endian GGUF files are not supported"));
    }
    return r.Error(absl::StrCat("unsupported version ", version_, " (only 2 and 3)"));
  }
  ASSIGN_OR_RETURN(uint64_t n_tensors, r.Read<uint64_t>("tensor count"));
  ASSIGN_OR_RETURN(uint64_t n_kv, r.Read<uint64_t>("metadata count"));
  // Minimum encoded sizes: a key/value is >= 13 bytes, a tensor info >= 24 bytes.
  if (n_kv > r.remaining() / 13) {
    return r.Error(absl::StrCat("metadata count ", n_kv, " cannot fit in the remaining ",
                                r.remaining(), " bytes"));
  }
  if (n_tensors > r.remaining() / 24) {
    return r.Error(absl::StrCat("tensor count ", n_tensors, " cannot fit in the remaining ",
                                r.remaining(), " bytes"));
  }

  kv_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    ASSIGN_OR_RETURN(std::string key, r.ReadString(absl::StrCat("key #", k)));
    ASSIGN_OR_RETURN(uint32_t t, r.Read<uint32_t>(absl::StrCat("type of key '", key, "'")));
    if (!KnownType(t)) return r.Error(absl::StrCat("key '", key, "' has unknown value type ", t));
    ASSIGN_OR_RETURN(GgufValue v, ReadValue(r, static_cast<GgufType>(t), key, 0));
    if (!kv_index_.emplace(key, kv_.size()).second) {
      return r.Error(absl::StrCat("duplicate metadata key '", key, "'"));
    }
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = Find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      return r.Error(
          absl::StrCat("general.alignment has type ", GgufTypeName(a->type), ", expected uint32"));
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > kMaxAlignment) {
      return r.Error(absl::StrCat("general.alignment ", a->u, " is not a power of two <= 2^30"));
    }
    alignment_ = a->u;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo info;
    ASSIGN_OR_RETURN(info.name, r.ReadString(absl::StrCat("name of tensor #", k)));
    const std::string what = absl::StrCat("tensor '", info.name, "'");
    ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>(absl::StrCat("dims of ", what)));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return r.Error(
          absl::StrCat(what, " has ", n_dims, " dimensions (expected 1..", kMaxDims, ")"));
    }
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(int64_t ne, r.Read<int64_t>(absl::StrCat("shape of ", what)));
      if (ne < 0) return r.Error(absl::StrCat(what, " has negative dimension ", ne));
      if (ne != 0 && n > std::numeric_limits<int64_t>::max() / ne) {
        return r.Error(absl::StrCat(what, " element count overflows int64"));
      }
      n *= ne;
      info.ne.push_back(ne);
    }
    info.n_elements = n;
    ASSIGN_OR_RETURN(info.type, r.Read<uint32_t>(absl::StrCat("type of ", what)));
    const GgmlTypeInfo* ti = FindGgmlType(info.type);
    if (ti == nullptr) return r.Error(absl::StrCat(what, " has unknown ggml type ", info.type));
    if (info.ne[0] % ti->block_size != 0) {
      return r.Error(absl::StrCat(what, " row length ", info.ne[0], " is not a multiple of the ",
                                  ti->name, " block size ", ti->block_size));
    }
    auto nbytes = GgmlBytes(info.type, n);
    if (!nbytes.ok()) return r.Error(absl::StrCat(what, ": ", nbytes.status().message()));
    info.n_bytes = *nbytes;
    ASSIGN_OR_RETURN(info.offset, r.Read<uint64_t>(absl::StrCat("offset of ", what)));
    if (info.offset % alignment_ != 0) {
      return r.Error(absl::StrCat(what, " offset ", info.offset, " is not a multiple of the ",
                                  alignment_, "-byte alignment"));
    }
    if (!tensor_index_.emplace(info.name, tensors_.size()).second) {
      return r.Error(absl::StrCat("duplicate tensor name '", info.name, "'"));
    }
    tensors_.push_back(std::move(info));
  }

  // Data section: aligned start after the tensor infos.
  const uint64_t end_of_infos = r.pos();
  data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
  const uint64_t size = bytes_.size();
  for (const GgufTensorInfo& t : tensors_) {  // empty tensors too: their offset must be valid
    if (data_offset_ > size) {
      return r.Error(absl::StrCat("data section starts at byte ", data_offset_, " past file size ",
                                  size, " (tensor '", t.name, "')"));
    }
    const uint64_t avail = size - data_offset_;
    const uint64_t nb = static_cast<uint64_t>(t.n_bytes);
    if (t.offset > avail || nb > avail - t.offset) {
      // Report the absolute end, saturating if it overflows.
      const uint64_t start = data_offset_ + t.offset;
      const bool overflow = t.offset > std::numeric_limits<uint64_t>::max() - data_offset_ ||
                            nb > std::numeric_limits<uint64_t>::max() - start;
      return r.Error(absl::StrCat("tensor '", t.name, "' (", GgmlTypeName(t.type), ", ", t.n_bytes,
                                  " bytes) data ends at byte ",
                                  overflow ? std::string("> 2^64") : absl::StrCat(start + nb),
                                  " past file size ", size));
    }
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
absl::Status Missing(const std::string& path, const std::string& key) {
  return absl::NotFoundError(absl::StrCat("GGUF '", path, "': metadata key '", key, "' not found"));
}
absl::Status WrongType(const std::string& path, const std::string& key, const GgufValue& v,
                       const char* want) {
  std::string have = GgufTypeName(v.type);
  if (v.IsArray()) have = absl::StrCat("array of ", GgufTypeName(v.elem_type));
  return absl::InvalidArgumentError(absl::StrCat("GGUF '", path, "': metadata key '", key,
                                                 "' has type ", have, ", expected ", want));
}
}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (IsUnsigned(v->type) && v->type != GgufType::kBool) return v->u;
  if (IsSigned(v->type)) {
    if (v->i < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF '", path(), "': metadata key '", key, "' is negative (", v->i, ")"));
    }
    return static_cast<uint64_t>(v->i);
  }
  return WrongType(path(), key, *v, "an unsigned integer");
}

absl::StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (IsSigned(v->type)) return v->i;
  if (IsUnsigned(v->type) && v->type != GgufType::kBool) {
    if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF '", path(), "': metadata key '", key,
                                                     "' value ", v->u, " overflows int64"));
    }
    return static_cast<int64_t>(v->u);
  }
  return WrongType(path(), key, *v, "an integer");
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type == GgufType::kFloat32 || v->type == GgufType::kFloat64) return v->f;
  if (IsSigned(v->type)) return static_cast<double>(v->i);
  if (IsUnsigned(v->type) && v->type != GgufType::kBool) return static_cast<double>(v->u);
  return WrongType(path(), key, *v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type != GgufType::kBool) return WrongType(path(), key, *v, "bool");
  return v->u != 0;
}

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type != GgufType::kString) return WrongType(path(), key, *v, "string");
  return v->s;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (!v->IsArray() || v->elem_type != GgufType::kString) {
    return WrongType(path(), key, *v, "array of string");
  }
  return v->strings;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (!v->IsArray() || !(IsSigned(v->elem_type) || IsUnsigned(v->elem_type))) {
    return WrongType(path(), key, *v, "array of integers");
  }
  return v->ints;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::TensorData(const GgufTensorInfo& info) const {
  return bytes_.data() + data_offset_ + info.offset;
}

absl::StatusOr<Tensor> GgufFile::ReadTensor(const std::string& name) const {
  const GgufTensorInfo* info = FindTensor(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat("GGUF '", path(), "': tensor '", name, "' not found"));
  }
  return ReadTensor(*info);
}

absl::StatusOr<Tensor> GgufFile::ReadTensor(const GgufTensorInfo& info) const {
  const GgmlTypeInfo* ti = FindGgmlType(info.type);
  if (ti == nullptr || !ti->dequantizable) {
    return absl::UnimplementedError(absl::StrCat(
        "GGUF '", path(), "': tensor '", info.name, "' has type ", GgmlTypeName(info.type),
        ", which cannot be dequantised; supported: ", SupportedGgmlTypes()));
  }
  Tensor t;
  t.shape = info.Shape();
  // n_elements <= 8 * n_bytes for every supported type and n_bytes is within the file, so
  // this allocation is bounded by the file size.
  t.data.resize(static_cast<size_t>(info.n_elements));
  const absl::Status st =
      DequantizeGgml(info.type, TensorData(info), static_cast<size_t>(info.n_bytes),
                     info.n_elements, t.data.data());
  if (!st.ok()) {
    return absl::Status(
        st.code(), absl::StrCat("GGUF '", path(), "': tensor '", info.name, "': ", st.message()));
  }
  return t;
}

}  // namespace hipserve::worker::loader
