// --help for the benchmark programs: each keeps its usage text (what it measures, how, and every
// flag) in one string, printed by --help / -h before any other argument is looked at.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hipserve::bench {

// Prints `usage` to stdout and exits 0 when an argument is --help or -h; otherwise returns.
inline void HandleHelp(int argc, char** argv, const char* usage) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(usage, stdout);
      std::exit(0);
    }
  }
}

}  // namespace hipserve::bench
