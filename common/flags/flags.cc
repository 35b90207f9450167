#include "common/flags/flags.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hipserve::flags {

// ---- Custom flag types --------------------------------------------------------------------

bool AbslParseFlag(absl::string_view text, ByteSize* out, std::string* error) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (!t.empty() && t.back() == 'b') t.pop_back();
  struct Suffix {
    const char* s;
    int64_t m;
  };
  static constexpr Suffix kSuffixes[] = {{"ki", int64_t{1} << 10},
                                         {"mi", int64_t{1} << 20},
                                         {"gi", int64_t{1} << 30},
                                         {"ti", int64_t{1} << 40},
                                         {"k", 1000},
                                         {"m", 1000000},
                                         {"g", 1000000000},
                                         {"t", 1000000000000}};
  int64_t mult = 1;
  for (const Suffix& s : kSuffixes) {
    if (absl::EndsWith(t, s.s) && t.size() > std::char_traits<char>::length(s.s)) {
      mult = s.m;
      t.resize(t.size() - std::char_traits<char>::length(s.s));
      break;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(t, &v) || !(v >= 0) || v * static_cast<double>(mult) > 9.0e18) {
    *error = "not a byte size (e.g. 40GiB, 512M, 1000)";
    return false;
  }
  out->bytes = static_cast<int64_t>(v * static_cast<double>(mult));
  return true;
}

std::string AbslUnparseFlag(ByteSize size) { return absl::StrCat(size.bytes); }

namespace {

std::string Escape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

template <typename T, typename ParseOne>
bool ParseNumberList(absl::string_view text, std::vector<T>* out, std::string* error,
                     ParseOne parse_one) {
  out->clear();
  if (text == "none") return true;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    T v;
    if (!parse_one(absl::StripAsciiWhitespace(part), &v)) {
      *error = absl::StrCat("'", part, "' is not a number");
      return false;
    }
    out->push_back(v);
  }
  return true;
}

}  // namespace

bool AbslParseFlag(absl::string_view text, StringList* out, std::string* error) {
  out->values.clear();
  if (text.empty()) return true;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      cur.push_back(text[++i]);
    } else if (text[i] == ',') {
      out->values.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(text[i]);
    }
  }
  out->values.push_back(std::move(cur));
  return true;
}

std::string AbslUnparseFlag(const StringList& list) {
  std::vector<std::string> escaped;
  for (const std::string& v : list.values) escaped.push_back(Escape(v));
  return absl::StrJoin(escaped, ",");
}

bool AbslParseFlag(absl::string_view text, IntList* out, std::string* error) {
  return ParseNumberList(text, &out->values, error,
                         [](absl::string_view s, int* v) { return absl::SimpleAtoi(s, v); });
}
std::string AbslUnparseFlag(const IntList& list) { return absl::StrJoin(list.values, ","); }

bool AbslParseFlag(absl::string_view text, DoubleList* out, std::string* error) {
  return ParseNumberList(text, &out->values, error,
                         [](absl::string_view s, double* v) { return absl::SimpleAtod(s, v); });
}
std::string AbslUnparseFlag(const DoubleList& list) { return absl::StrJoin(list.values, ","); }

// ---- Commands -----------------------------------------------------------------------------

namespace {

struct OwnedFlag {
  std::string name;  // on the command line
  absl::CommandLineFlag* flag;
  size_t scope;  // index of the prefix that matched (help order)
};

// The command's flags, in help order (prefix order, then name).
std::vector<OwnedFlag> OwnedFlags(const CommandSpec& spec) {
  std::vector<OwnedFlag> out;
  for (const auto& [absl_name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired()) continue;
    for (size_t p = 0; p < spec.prefixes.size(); ++p) {
      const std::string& prefix = spec.prefixes[p];
      if (prefix.empty()) {
        // absl normalizes the name (drops leading slashes), so compare the tails.
        const std::string file = flag->Filename();
        if (file.empty() || !absl::EndsWith(spec.file, file)) continue;
      } else if (!absl::StartsWith(absl_name, prefix) || absl_name.size() == prefix.size()) {
        continue;
      }
      out.push_back({std::string(absl_name.substr(prefix.size())), flag, p});
      break;
    }
  }
  std::sort(out.begin(), out.end(), [](const OwnedFlag& a, const OwnedFlag& b) {
    return a.scope != b.scope ? a.scope < b.scope : a.name < b.name;
  });
  return out;
}

std::string TypeName(const absl::CommandLineFlag& f) {
  if (f.IsOfType<bool>()) return "bool";
  if (f.IsOfType<int>()) return "int";
  if (f.IsOfType<int64_t>()) return "int64";
  if (f.IsOfType<uint64_t>()) return "uint64";
  if (f.IsOfType<double>()) return "number";
  if (f.IsOfType<std::string>()) return "string";
  if (f.IsOfType<ByteSize>()) return "bytes";
  if (f.IsOfType<StringList>()) return "string, repeatable";
  if (f.IsOfType<IntList>()) return "ints, comma-separated";
  if (f.IsOfType<DoubleList>()) return "numbers, comma-separated";
  if (f.IsOfType<std::vector<std::string>>()) return "strings, comma-separated";
  return "value";
}

// Appends `text` word-wrapped to `width` columns, each line indented by `indent` spaces.
void AppendWrapped(std::string* out, absl::string_view text, size_t indent, size_t width) {
  for (absl::string_view para : absl::StrSplit(text, '\n')) {
    size_t col = 0;
    for (absl::string_view word : absl::StrSplit(para, ' ', absl::SkipEmpty())) {
      if (col > 0 && col + 1 + word.size() > width) {
        out->push_back('\n');
        col = 0;
      }
      if (col == 0) {
        out->append(indent, ' ');
        col = indent;
      } else {
        out->push_back(' ');
        ++col;
      }
      absl::StrAppend(out, word);
      col += word.size();
    }
    out->push_back('\n');
  }
}

}  // namespace

absl::Status ParseCommandFlags(const CommandSpec& spec, const std::vector<std::string>& args) {
  const std::vector<OwnedFlag> owned = OwnedFlags(spec);
  auto find = [&](absl::string_view name) -> const OwnedFlag* {
    for (const OwnedFlag& f : owned) {
      if (f.name == name) return &f;
    }
    return nullptr;
  };
  // Repeatable flags collect every occurrence and are set once at the end.
  std::map<std::string, StringList> lists;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h" || a == "help" || a == "-help") {
      return absl::NotFoundError("help");
    }
    if (a.size() < 3 || a.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", a, "' (see ", spec.name, " --help)"));
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    std::replace(name.begin(), name.end(), '-', '_');
    const OwnedFlag* f = find(name);
    if (f == nullptr && !has_value && absl::StartsWith(name, "no")) {
      const OwnedFlag* neg = find(name.substr(2));
      if (neg != nullptr && neg->flag->IsOfType<bool>()) {
        f = neg;
        value = "false";
        has_value = true;
      }
    }
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " for '", spec.name,
                                                     "' (see ", spec.name, " --help)"));
    }
    if (!has_value) {
      if (f->flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", f->name, " needs a value"));
      }
    }
    if (f->flag->IsOfType<StringList>()) {
      lists[f->name].values.push_back(value);
      continue;
    }
    std::string error;
    if (!f->flag->ParseFrom(value, &error)) {
      // absl's message names the absl flag ("serve_tp"); say it with the command-line name,
      // plus the type's own explanation (after "; ") when it gave one.
      std::string detail;
      if (size_t p = error.find("'; "); p != std::string::npos) detail = error.substr(p + 3);
      return absl::InvalidArgumentError(
          absl::StrCat("--", f->name, ": '", value, "' is not a valid ", TypeName(*f->flag),
                       detail.empty() ? "" : absl::StrCat(" (", detail, ")")));
    }
  }
  for (const auto& [name, list] : lists) {
    std::string error;
    if (!find(name)->flag->ParseFrom(AbslUnparseFlag(list), &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

std::string CommandUsage(const CommandSpec& spec) {
  std::string out = absl::StrCat("usage: ", spec.name, " [flags]\n\n");
  if (!spec.summary.empty()) absl::StrAppend(&out, spec.summary, "\n\n");
  absl::StrAppend(&out, "flags:\n");
  for (const OwnedFlag& f : OwnedFlags(spec)) {
    absl::StrAppend(&out, "  --", f.name, " (", TypeName(*f.flag), ")");
    const std::string def = f.flag->DefaultValue();
    if (!def.empty()) absl::StrAppend(&out, "  default: ", def);
    out.push_back('\n');
    AppendWrapped(&out, f.flag->Help(), 6, 100);
  }
  absl::StrAppend(&out, "  --help\n      Show this text.\n");
  return out;
}

int ParseCommandFlagsOrExitCode(const CommandSpec& spec, const std::vector<std::string>& args) {
  absl::Status s = ParseCommandFlags(spec, args);
  if (absl::IsNotFound(s)) {
    std::cout << CommandUsage(spec);
    return 0;
  }
  if (!s.ok()) {
    std::cerr << spec.name << ": " << s.message() << "\n";
    return 2;
  }
  return -1;
}

void ParseProgramFlagsOrExit(int argc, char** argv, absl::string_view usage_text,
                             const char* file) {
  std::string name = argc > 0 ? argv[0] : "program";
  if (size_t slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
  const CommandSpec spec{
      name, std::string(absl::StripTrailingAsciiWhitespace(usage_text)), {""}, file};
  const int rc = ParseCommandFlagsOrExitCode(spec, std::vector<std::string>(argv + 1, argv + argc));
  if (rc >= 0) std::exit(rc);
}

absl::Status CheckFlag(bool ok, absl::string_view flag, absl::string_view what, double value) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be ", what, ", got ", value));
}

}  // namespace hipserve::flags
