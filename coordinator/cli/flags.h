// FlagSet: per-subcommand flags with generated --help. Accepts --name=value, --name value,
// --flag / --noflag for booleans. Byte-size flags accept K/M/G/T (1000) and Ki/Mi/Gi/Ti (1024)
// suffixes. Unknown flags and malformed values are errors naming the flag.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hipserve::cli {

class FlagSet {
 public:
  FlagSet(std::string command, std::string summary);

  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int* target, const std::string& help);
  void Uint64(const std::string& name, uint64_t* target, const std::string& help);
  void Double(const std::string& name, double* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  void Bytes(const std::string& name, int64_t* target, const std::string& help);
  // Repeatable: each occurrence appends.
  void StringList(const std::string& name, std::vector<std::string>* target,
                  const std::string& help);

  // Parses args (without the program and subcommand names). Returns NotFound("help") when
  // --help was given (Usage() should be printed), InvalidArgument on bad flags.
  absl::Status Parse(const std::vector<std::string>& args);
  std::string Usage() const;

 private:
  struct Flag {
    std::string name, help, default_value, type;
    bool is_bool = false;
    std::function<absl::Status(const std::string&)> set;
  };
  void Add(Flag flag);
  std::string command_, summary_;
  std::vector<Flag> flags_;
};

// Parses "8GiB", "512M", "1000" into bytes.
absl::Status ParseBytes(const std::string& text, int64_t* out);

}  // namespace hipserve::cli
