#include "coordinator/cli/flags.h"

#include <gtest/gtest.h>

namespace hipserve::cli {
namespace {

TEST(FlagsTest, ParsesEveryKindAndForms) {
  std::string s = "x";
  int i = 1;
  bool b = false, c = true;
  int64_t bytes = 0;
  double d = 0;
  std::vector<std::string> list;
  FlagSet f("t", "test");
  f.String("s", &s, "");
  f.Int("i", &i, "");
  f.Bool("b", &b, "");
  f.Bool("c", &c, "");
  f.Bytes("kv", &bytes, "");
  f.Double("d", &d, "");
  f.StringList("stop", &list, "");
  ASSERT_TRUE(f.Parse({"--s=hello", "--i", "42", "--b", "--noc", "--kv=2GiB", "--d=0.5",
                       "--stop=a", "--stop", "b"})
                  .ok());
  EXPECT_EQ(s, "hello");
  EXPECT_EQ(i, 42);
  EXPECT_TRUE(b);
  EXPECT_FALSE(c);
  EXPECT_EQ(bytes, int64_t{2} << 30);
  EXPECT_EQ(d, 0.5);
  EXPECT_EQ(list, (std::vector<std::string>{"a", "b"}));
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  int i = 0;
  FlagSet f("t", "test");
  f.Int("port", &i, "the port");
  absl::Status s = f.Parse({"--port=abc"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--port"), std::string::npos);
  s = f.Parse({"--nope=1"});
  EXPECT_NE(s.message().find("unknown flag --nope"), std::string::npos);
  EXPECT_EQ(f.Parse({"--port"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::IsNotFound(f.Parse({"--help"})));
  EXPECT_NE(f.Usage().find("--port (int)"), std::string::npos);
  EXPECT_NE(f.Usage().find("the port"), std::string::npos);
}

TEST(FlagsTest, ByteSizes) {
  int64_t v = 0;
  EXPECT_TRUE(ParseBytes("512", &v).ok());
  EXPECT_EQ(v, 512);
  EXPECT_TRUE(ParseBytes("1.5K", &v).ok());
  EXPECT_EQ(v, 1500);
  EXPECT_TRUE(ParseBytes("8gib", &v).ok());
  EXPECT_EQ(v, int64_t{8} << 30);
  EXPECT_FALSE(ParseBytes("-1", &v).ok());
  EXPECT_FALSE(ParseBytes("lots", &v).ok());
}

}  // namespace
}  // namespace hipserve::cli
