// Small exception-free helpers over nlohmann::json for config and header parsing (internal).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace hipserve::worker::loader::internal {

// Parses `text`; InvalidArgument naming `what` when it is not valid JSON or not an object.
absl::StatusOr<nlohmann::json> ParseJsonObject(const std::string& text, const std::string& what);
// Reads a whole (small) file; NotFound when absent, InvalidArgument over `max_bytes`.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes = 64 << 20);
bool FileExists(const std::string& path);

// Field getters: nullopt when the key is absent or null; InvalidArgument naming `what.key`
// when present with the wrong type or out of range.
absl::StatusOr<std::optional<int64_t>> OptInt(const nlohmann::json& obj, const std::string& key,
                                              const std::string& what);
absl::StatusOr<std::optional<double>> OptNumber(const nlohmann::json& obj, const std::string& key,
                                                const std::string& what);
absl::StatusOr<std::optional<bool>> OptBool(const nlohmann::json& obj, const std::string& key,
                                            const std::string& what);
absl::StatusOr<std::optional<std::string>> OptString(const nlohmann::json& obj,
                                                     const std::string& key,
                                                     const std::string& what);

}  // namespace hipserve::worker::loader::internal
