#include "coordinator/auth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

namespace hipserve::coordinator {
namespace {

std::string WriteFile(const std::string& text) {
  char path[] = "/tmp/hipserve-auth-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(BearerTokensTest, ReadsTokensSkippingCommentsAndBlanks) {
  const std::string p = WriteFile("# team a\n  alpha  \n\nbeta\n#gamma\n");
  auto t = ReadTokenFile(p);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, (std::vector<std::string>{"alpha", "beta"}));
  std::remove(p.c_str());
}

TEST(BearerTokensTest, EmptyOrMissingFileIsRefused) {
  const std::string p = WriteFile("# nothing\n\n");
  EXPECT_EQ(BearerTokens::Load(p).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BearerTokens::Load("/nonexistent/tokens").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::remove(p.c_str());
}

TEST(BearerTokensTest, ChecksTheBearerCredential) {
  const std::string p = WriteFile("alpha\nbeta\n");
  auto t = BearerTokens::Load(p);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->Check("Bearer alpha").ok());
  EXPECT_TRUE((*t)->Check("bearer beta").ok());
  EXPECT_TRUE((*t)->Check("  BEARER   beta  ").ok());
  EXPECT_EQ((*t)->Check("").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*t)->Check("alpha").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*t)->Check("Basic alpha").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*t)->Check("Bearer ").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*t)->Check("Bearer alph").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*t)->Check("Bearer alphaa").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*t)->Check("Bearer gamma").code(), absl::StatusCode::kPermissionDenied);
  std::remove(p.c_str());
}

TEST(BearerTokensTest, ReloadsWhenTheFileChanges) {
  const std::string p = WriteFile("old\n");
  auto t = BearerTokens::Load(p);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE((*t)->Check("Bearer old").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the re-read interval
  std::ofstream(p) << "new\n";
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  EXPECT_EQ((*t)->Check("Bearer old").code(), absl::StatusCode::kPermissionDenied);
  // An emptied file keeps the previous tokens (never locks everyone out by accident).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  std::ofstream(p) << "\n";
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  std::remove(p.c_str());
}

}  // namespace
}  // namespace hipserve::coordinator
