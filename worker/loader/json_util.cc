#include "worker/loader/json_util.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace hipserve::worker::loader::internal {

absl::StatusOr<nlohmann::json> ParseJsonObject(const std::string& text, const std::string& what) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON"));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected a JSON object, got ", j.type_name()));
  }
  return j;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("file '", path, "' not found"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("file '", path, "' is ", st.st_size, " bytes, over the limit of ", max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
const nlohmann::json* Get(const nlohmann::json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
absl::Status Bad(const std::string& what, const std::string& key, const nlohmann::json& v,
                 const char* want) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": '", key, "' is ", v.type_name(), ", expected ", want));
}
}  // namespace

absl::StatusOr<std::optional<int64_t>> OptInt(const nlohmann::json& obj, const std::string& key,
                                              const std::string& what) {
  const nlohmann::json* v = Get(obj, key);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", key, "' = ", u, " too large"));
    }
    return std::optional<int64_t>(static_cast<int64_t>(u));
  }
  if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
  return Bad(what, key, *v, "an integer");
}

absl::StatusOr<std::optional<double>> OptNumber(const nlohmann::json& obj, const std::string& key,
                                                const std::string& what) {
  const nlohmann::json* v = Get(obj, key);
  if (v == nullptr) return std::optional<double>();
  if (v->is_number()) return std::optional<double>(v->get<double>());
  return Bad(what, key, *v, "a number");
}

absl::StatusOr<std::optional<bool>> OptBool(const nlohmann::json& obj, const std::string& key,
                                            const std::string& what) {
  const nlohmann::json* v = Get(obj, key);
  if (v == nullptr) return std::optional<bool>();
  if (v->is_boolean()) return std::optional<bool>(v->get<bool>());
  return Bad(what, key, *v, "a boolean");
}

absl::StatusOr<std::optional<std::string>> OptString(const nlohmann::json& obj,
                                                     const std::string& key,
                                                     const std::string& what) {
  const nlohmann::json* v = Get(obj, key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  return Bad(what, key, *v, "a string");
}

}  // namespace hipserve::worker::loader::internal
