// Minimal logging and CHECK macros (Debian's Abseil 20220623 has no absl/log).
//
// LOG(INFO) << "text";  writes one line to stderr with time, level, file:line.
// CHECK(cond) << "why"; aborts with file, line and the message when cond is false.
// Thread-safe: each statement builds its line in a local buffer and writes it with one call.
#pragma once

#include <sstream>
#include <string>

namespace hipserve::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Lines below this level are dropped. Default kInfo; HIPSERVE_LOG_LEVEL=debug|info|warning|error.
LogLevel MinLogLevel();
void SetMinLogLevel(LogLevel level);
// Prefix added to every line (e.g. "worker[1]"), set once at process start.
void SetLogPrefix(const std::string& prefix);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows the stream when a log statement is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace hipserve::common

#define HIPSERVE_LOG_LEVEL_DEBUG ::hipserve::common::LogLevel::kDebug
#define HIPSERVE_LOG_LEVEL_INFO ::hipserve::common::LogLevel::kInfo
#define HIPSERVE_LOG_LEVEL_WARNING ::hipserve::common::LogLevel::kWarning
#define HIPSERVE_LOG_LEVEL_ERROR ::hipserve::common::LogLevel::kError
#define HIPSERVE_LOG_LEVEL_FATAL ::hipserve::common::LogLevel::kFatal

#define LOG(level)                                                                         \
  (HIPSERVE_LOG_LEVEL_##level < ::hipserve::common::MinLogLevel())                         \
      ? (void)0                                                                            \
      : ::hipserve::common::LogVoidify() &                                                 \
            ::hipserve::common::LogMessage(HIPSERVE_LOG_LEVEL_##level, __FILE__, __LINE__) \
                .stream()

#define CHECK(cond)                                                                           \
  (cond) ? (void)0                                                                            \
         : ::hipserve::common::LogVoidify() &                                                 \
               ::hipserve::common::LogMessage(::hipserve::common::LogLevel::kFatal, __FILE__, \
                                              __LINE__)                                       \
                       .stream()                                                              \
                   << "CHECK failed: " #cond " "

#define CHECK_OP_IMPL(a, b, op)                                                                   \
  ((a)op(b)) ? (void)0                                                                            \
             : ::hipserve::common::LogVoidify() &                                                 \
                   ::hipserve::common::LogMessage(::hipserve::common::LogLevel::kFatal, __FILE__, \
                                                  __LINE__)                                       \
                           .stream()                                                              \
                       << "CHECK failed: " #a " " #op " " #b " (" << (a) << " vs " << (b) << ") "
#define CHECK_EQ(a, b) CHECK_OP_IMPL(a, b, ==)
#define CHECK_NE(a, b) CHECK_OP_IMPL(a, b, !=)
#define CHECK_LT(a, b) CHECK_OP_IMPL(a, b, <)
#define CHECK_LE(a, b) CHECK_OP_IMPL(a, b, <=)
#define CHECK_GT(a, b) CHECK_OP_IMPL(a, b, >)
#define CHECK_GE(a, b) CHECK_OP_IMPL(a, b, >=)
#define CHECK_OK(expr)                                            \
  do {                                                            \
    ::absl::Status _hipserve_check_status = (expr);               \
    CHECK(_hipserve_check_status.ok()) << _hipserve_check_status; \
  } while (0)
