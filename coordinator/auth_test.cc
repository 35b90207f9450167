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
  const std::string p = WriteFile("# team a\n  alpha  \n\nbeta  team-b\n#gamma\n");
  auto t = ReadTokenFile(p);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].token, "alpha");
  // An unnamed token's client is a hash of it, never the token itself.
  EXPECT_EQ((*t)[0].client.rfind("token-", 0), 0u) << (*t)[0].client;
  EXPECT_EQ((*t)[0].client.size(), 14u);
  EXPECT_EQ((*t)[0].client.find("alpha"), std::string::npos);
  EXPECT_EQ((*t)[1], (TokenEntry{"beta", "team-b"}));
  std::remove(p.c_str());
}

TEST(BearerTokensTest, MoreThanTwoFieldsIsRefused) {
  const std::string p = WriteFile("alpha\nbeta team b\n");
  absl::Status s = ReadTokenFile(p).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s;
  std::remove(p.c_str());
}

TEST(BearerTokensTest, IdentifiesTheClient) {
  const std::string p = WriteFile("alpha alice\nalpha2 alice\nbeta\n");
  auto t = BearerTokens::Load(p);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Identify("Bearer alpha"), "alice");
  EXPECT_EQ(*(*t)->Identify("Bearer alpha2"), "alice");  // two tokens, one client
  auto beta = (*t)->Identify("Bearer beta");
  ASSERT_TRUE(beta.ok());
  EXPECT_EQ(*beta, *(*t)->Identify("Bearer beta"));  // stable
  EXPECT_NE(*beta, "alice");
  EXPECT_EQ((*t)->Identify("Bearer gamma").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*t)->Identify("").status().code(), absl::StatusCode::kUnauthenticated);
  std::remove(p.c_str());
}

TEST(BearerTokensTest, ReloadNowKeepsTheOldTokensOnError) {
  const std::string p = WriteFile("old\n");
  auto t = BearerTokens::Load(p);
  ASSERT_TRUE(t.ok());
  // Same second, same size: the mtime check might not notice; Reload (SIGHUP) reads anyway.
  std::ofstream(p) << "new\n";
  EXPECT_TRUE((*t)->Reload().ok());
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  EXPECT_EQ((*t)->Check("Bearer old").code(), absl::StatusCode::kPermissionDenied);
  // A bad file (no token; then a malformed line; then gone) keeps the previous tokens.
  std::ofstream(p) << "# emptied\n";
  EXPECT_EQ((*t)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  std::ofstream(p) << "a b c\n";
  EXPECT_EQ((*t)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  std::remove(p.c_str());
  EXPECT_EQ((*t)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*t)->Check("Bearer new").ok());
  EXPECT_EQ((*t)->size(), 1u);
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
