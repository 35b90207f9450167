#include "coordinator/cli/flags.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hipserve::cli {

absl::Status ParseBytes(const std::string& text, int64_t* out) {
  std::string t = absl::AsciiStrToLower(text);
  if (!t.empty() && t.back() == 'b') t.pop_back();
  int64_t mult = 1;
  struct Suffix {
    const char* s;
    int64_t m;
  };
  const Suffix suffixes[] = {{"ki", 1LL << 10}, {"mi", 1LL << 20}, {"gi", 1LL << 30},
                             {"ti", 1LL << 40}, {"k", 1000LL},     {"m", 1000000LL},
                             {"g", 1000000000LL}, {"t", 1000000000000LL}};
  for (const Suffix& s : suffixes) {
    const size_t n = std::char_traits<char>::length(s.s);
    if (t.size() > n && t.compare(t.size() - n, n, s.s) == 0) {
      mult = s.m;
      t.resize(t.size() - n);
      break;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(t, &v) || v < 0 || v * mult > 9.0e18) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a byte size (e.g. 8GiB)"));
  }
  *out = static_cast<int64_t>(v * mult);
  return absl::OkStatus();
}

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  Add({name, help, *target, "string", false, [target](const std::string& v) {
         *target = v;
         return absl::OkStatus();
       }});
}

void FlagSet::Int(const std::string& name, int* target, const std::string& help) {
  Add({name, help, std::to_string(*target), "int", false, [name, target](const std::string& v) {
         if (!absl::SimpleAtoi(v, target)) {
           return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", v, "' is not an integer"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::Uint64(const std::string& name, uint64_t* target, const std::string& help) {
  Add({name, help, std::to_string(*target), "uint64", false,
       [name, target](const std::string& v) {
         if (!absl::SimpleAtoi(v, target)) {
           return absl::InvalidArgumentError(
               absl::StrCat("--", name, ": '", v, "' is not a non-negative integer"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::Double(const std::string& name, double* target, const std::string& help) {
  Add({name, help, absl::StrCat(*target), "number", false, [name, target](const std::string& v) {
         if (!absl::SimpleAtod(v, target)) {
           return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", v, "' is not a number"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  Add({name, help, *target ? "true" : "false", "bool", true,
       [name, target](const std::string& v) {
         if (!absl::SimpleAtob(v, target)) {
           return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", v, "' is not a boolean"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::Bytes(const std::string& name, int64_t* target, const std::string& help) {
  Add({name, help, std::to_string(*target), "bytes", false,
       [name, target](const std::string& v) {
         absl::Status s = ParseBytes(v, target);
         if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", s.message()));
         return absl::OkStatus();
       }});
}

void FlagSet::StringList(const std::string& name, std::vector<std::string>* target,
                         const std::string& help) {
  Add({name, help, absl::StrJoin(*target, ","), "string, repeatable", false,
       [target](const std::string& v) {
         target->push_back(v);
         return absl::OkStatus();
       }});
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h" || a == "help") return absl::NotFoundError("help");
    if (a.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a, "' (see ",
                                                     command_, " --help)"));
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = std::find_if(flags_.begin(), flags_.end(),
                           [&](const Flag& f) { return f.name == name; });
    if (it == flags_.end() && !has_value && name.rfind("no", 0) == 0) {
      auto neg = std::find_if(flags_.begin(), flags_.end(), [&](const Flag& f) {
        return f.is_bool && f.name == name.substr(2);
      });
      if (neg != flags_.end()) {
        absl::Status s = neg->set("false");
        if (!s.ok()) return s;
        continue;
      }
    }
    if (it == flags_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " for '", command_, "' (see ", command_, " --help)"));
    }
    if (!has_value) {
      if (it->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    }
    absl::Status s = it->set(value);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("usage: ", command_, " [flags]\n\n", summary_, "\n\nflags:\n");
  for (const Flag& f : flags_) {
    absl::StrAppend(&out, "  --", f.name, " (", f.type, ")");
    if (!f.default_value.empty()) absl::StrAppend(&out, "  default: ", f.default_value);
    absl::StrAppend(&out, "\n      ", f.help, "\n");
  }
  absl::StrAppend(&out, "  --help\n      Show this text.\n");
  return out;
}

}  // namespace hipserve::cli
