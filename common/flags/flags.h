// Command-line flags on top of absl::flags, for one binary with several subcommands (`hipserve`)
// and for single-command programs (the benchmarks).
//
// Flags are ordinary ABSL_FLAG definitions; absl parses and type-checks every value (custom types
// below add byte sizes and repeatable strings). absl flags are global, so a subcommand owns the
// flags whose absl names start with one of its prefixes: `ABSL_FLAG(int, serve_tp, ...)` is
// `--tp` of `hipserve serve` (see CommandSpec). Parsing accepts --name=value, --name value,
// --flag / --noflag for booleans, and '-' for '_' in names (--prefill-chunk). A flag that the
// command does not own is an error naming it, even when another subcommand defines it, and
// --help lists the command's flags only. Thread-safety: parse before starting threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hipserve::flags {

// A size in bytes: "40GiB", "512M", "1.5K", "1000". K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti
// powers of 1024; a trailing 'B' and case are ignored.
struct ByteSize {
  int64_t bytes = 0;
};
bool AbslParseFlag(absl::string_view text, ByteSize* out, std::string* error);
std::string AbslUnparseFlag(ByteSize size);

// A repeatable string flag: each occurrence on the command line appends one value (which may
// contain commas). The textual form (defaults, AbslUnparseFlag) is a comma-separated list with
// '\' escaping ',' and '\' (a list of one empty string reads back as no values).
struct StringList {
  std::vector<std::string> values;
};
bool AbslParseFlag(absl::string_view text, StringList* out, std::string* error);
std::string AbslUnparseFlag(const StringList& list);

// Comma-separated numbers ("2048,4096"); "none" or "" is the empty list.
struct IntList {
  std::vector<int> values;
};
bool AbslParseFlag(absl::string_view text, IntList* out, std::string* error);
std::string AbslUnparseFlag(const IntList& list);
struct DoubleList {
  std::vector<double> values;
};
bool AbslParseFlag(absl::string_view text, DoubleList* out, std::string* error);
std::string AbslUnparseFlag(const DoubleList& list);

// Which absl flags make up one command, and what --help says about it.
struct CommandSpec {
  std::string name;     // as typed, e.g. "hipserve serve"; used in usage and error messages
  std::string summary;  // paragraph(s) printed by --help above the flags
  // The command owns every absl flag whose name starts with one of these prefixes; its
  // command-line name is the rest ("serve_tp" -> --tp). Earlier prefixes are listed first in
  // --help. An empty prefix owns every flag defined in `file` (below).
  std::vector<std::string> prefixes;
  // With an empty prefix: only flags defined in this source file (pass __FILE__).
  std::string file = "";
};

// Parses `args` (without the program and subcommand names) into the command's absl flags.
// Returns NotFound("help") for --help, -h or help (print CommandUsage), InvalidArgument naming
// the flag for an unknown flag, a malformed value or a missing value.
absl::Status ParseCommandFlags(const CommandSpec& spec, const std::vector<std::string>& args);

// "usage: <name> [flags]", the summary, then every flag: --name (type)  default: value, help.
std::string CommandUsage(const CommandSpec& spec);

// Parses, prints usage (stdout) or the error (stderr). Returns -1 to go on, else the exit code:
// 0 after --help, 2 after a bad flag.
int ParseCommandFlagsOrExitCode(const CommandSpec& spec, const std::vector<std::string>& args);

// For a program with one command (a benchmark's main): the flags defined in `file`, parsed from
// argv[1..]. Exits 0 after --help (printing `usage_text` and the flags), 2 after a bad flag.
void ParseProgramFlagsOrExit(int argc, char** argv, absl::string_view usage_text, const char* file);

// Post-parse range checks: OK, or InvalidArgument "--<flag> must be <what>, got <value>".
absl::Status CheckFlag(bool ok, absl::string_view flag, absl::string_view what, double value);

}  // namespace hipserve::flags
