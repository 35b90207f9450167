#include "common/flags/flags.h"

#include <gtest/gtest.h>

#include "absl/flags/flag.h"

// Two commands of one imaginary binary: "a" owns a_*, "b" owns b_*; both own shared_*.
ABSL_FLAG(std::string, a_s, "x", "a string");
ABSL_FLAG(int, a_i, 1, "an int");
ABSL_FLAG(bool, a_b, false, "a bool");
ABSL_FLAG(bool, a_c, true, "another bool");
ABSL_FLAG(hipserve::flags::ByteSize, a_kv, hipserve::flags::ByteSize{}, "bytes");
ABSL_FLAG(double, a_d, 0, "a number");
ABSL_FLAG(uint64_t, a_u, 0, "an unsigned");
ABSL_FLAG(hipserve::flags::StringList, a_stop, {}, "stop strings");
ABSL_FLAG(hipserve::flags::IntList, a_lens, (hipserve::flags::IntList{{8, 16}}), "lengths");
ABSL_FLAG(int, a_prefill_chunk, 0, "hyphenated on the command line");
ABSL_FLAG(int, b_port, 50051, "the port of b");
ABSL_FLAG(int, shared_max_batch, 8, "shared by a and b");

namespace hipserve::flags {
namespace {

const CommandSpec kA{"prog a", "Command a.", {"a_", "shared_"}, ""};
const CommandSpec kB{"prog b", "Command b.", {"b_", "shared_"}, ""};

TEST(FlagsTest, ParsesEveryKindAndForm) {
  ASSERT_TRUE(ParseCommandFlags(kA, {"--s=hello", "--i", "42", "--b", "--noc", "--kv=2GiB",
                                     "--d=0.5", "--u=7", "--stop=a,b", "--stop", "c",
                                     "--lens=1,2,3", "--prefill-chunk=64", "--max_batch=3"})
                  .ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_a_s), "hello");
  EXPECT_EQ(absl::GetFlag(FLAGS_a_i), 42);
  EXPECT_TRUE(absl::GetFlag(FLAGS_a_b));
  EXPECT_FALSE(absl::GetFlag(FLAGS_a_c));
  EXPECT_EQ(absl::GetFlag(FLAGS_a_kv).bytes, int64_t{2} << 30);
  EXPECT_EQ(absl::GetFlag(FLAGS_a_d), 0.5);
  EXPECT_EQ(absl::GetFlag(FLAGS_a_u), 7u);
  // Each occurrence is one value, commas included.
  EXPECT_EQ(absl::GetFlag(FLAGS_a_stop).values, (std::vector<std::string>{"a,b", "c"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_a_lens).values, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(absl::GetFlag(FLAGS_a_prefill_chunk), 64);
  EXPECT_EQ(absl::GetFlag(FLAGS_shared_max_batch), 3);
}

TEST(FlagsTest, BadValueNamesTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string must_contain;
  };
  for (const Case& c : std::vector<Case>{
           {{"--i=abc"}, "--i: 'abc' is not a valid int"},
           {{"--i=99999999999"}, "--i:"},
           {{"--u=-1"}, "--u: '-1' is not a valid uint64"},
           {{"--d=fast"}, "--d:"},
           {{"--b=maybe"}, "--b:"},
           {{"--kv=lots"}, "--kv: 'lots' is not a valid bytes (not a byte size"},
           {{"--kv=-1G"}, "--kv:"},
           {{"--lens=1,x"}, "--lens:"},
           {{"--i"}, "--i needs a value"},
           {{"--nope=1"}, "unknown flag --nope for 'prog a'"},
           {{"positional"}, "unexpected argument 'positional'"},
       }) {
    absl::Status s = ParseCommandFlags(kA, c.args);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.args[0];
    EXPECT_NE(s.message().find(c.must_contain), std::string::npos)
        << c.args[0] << ": '" << s.message() << "' should contain '" << c.must_contain << "'";
  }
  // A flag of another command is refused, not silently set.
  absl::Status s = ParseCommandFlags(kA, {"--port=1"});
  EXPECT_NE(s.message().find("unknown flag --port for 'prog a'"), std::string::npos) << s;
  EXPECT_EQ(absl::GetFlag(FLAGS_b_port), 50051);
  // --noX only negates booleans.
  EXPECT_FALSE(ParseCommandFlags(kA, {"--noi"}).ok());
  EXPECT_TRUE(absl::IsNotFound(ParseCommandFlags(kA, {"--i=1", "--help"})));
  EXPECT_TRUE(absl::IsNotFound(ParseCommandFlags(kA, {"-h"})));
}

TEST(FlagsTest, ByteSizes) {
  struct Case {
    const char* text;
    int64_t bytes;
  };
  for (const Case& c : std::vector<Case>{{"512", 512},
                                         {"1.5K", 1500},
                                         {"8gib", int64_t{8} << 30},
                                         {"40GiB", int64_t{40} << 30},
                                         {"2M", 2000000},
                                         {"3MiB", 3 << 20},
                                         {"1TB", 1000000000000},
                                         {"0", 0}}) {
    ByteSize b;
    std::string error;
    ASSERT_TRUE(AbslParseFlag(c.text, &b, &error)) << c.text << ": " << error;
    EXPECT_EQ(b.bytes, c.bytes) << c.text;
    // Round trip through the flag's text form.
    ByteSize again;
    ASSERT_TRUE(AbslParseFlag(AbslUnparseFlag(b), &again, &error));
    EXPECT_EQ(again.bytes, b.bytes);
  }
  for (const char* bad : {"-1", "lots", "", "GiB", "1e30"}) {
    ByteSize b;
    std::string error;
    EXPECT_FALSE(AbslParseFlag(bad, &b, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TEST(FlagsTest, StringListRoundTrips) {
  for (const std::vector<std::string>& v :
       std::vector<std::vector<std::string>>{{}, {"a"}, {"a,b", "c\\d", ""}, {",", "\\"}}) {
    StringList parsed;
    std::string error;
    ASSERT_TRUE(AbslParseFlag(AbslUnparseFlag(StringList{v}), &parsed, &error));
    EXPECT_EQ(parsed.values, v);
  }
}

TEST(FlagsTest, UsageListsTheCommandsFlagsOnly) {
  const std::string a = CommandUsage(kA);
  EXPECT_NE(a.find("usage: prog a [flags]"), std::string::npos) << a;
  EXPECT_NE(a.find("Command a."), std::string::npos);
  EXPECT_NE(a.find("--i (int)  default: 1\n      an int"), std::string::npos) << a;
  EXPECT_NE(a.find("--kv (bytes)"), std::string::npos);
  EXPECT_NE(a.find("--stop (string, repeatable)"), std::string::npos);
  EXPECT_NE(a.find("--max_batch (int)  default: 8"), std::string::npos);
  EXPECT_EQ(a.find("--port"), std::string::npos) << a;
  const std::string b = CommandUsage(kB);
  EXPECT_NE(b.find("--port (int)  default: 50051\n      the port of b"), std::string::npos) << b;
  EXPECT_NE(b.find("--max_batch"), std::string::npos);
  EXPECT_EQ(b.find("--kv"), std::string::npos) << b;
  EXPECT_EQ(b.find("--stop"), std::string::npos) << b;
  // Own flags before shared ones.
  EXPECT_LT(a.find("--s (string)"), a.find("--max_batch"));
}

TEST(FlagsTest, FileScopeOwnsTheFlagsOfOneFile) {
  const CommandSpec spec{"prog", "", {""}, __FILE__};
  const std::string u = CommandUsage(spec);
  EXPECT_NE(u.find("--a_i (int)"), std::string::npos) << u;
  EXPECT_NE(u.find("--b_port (int)"), std::string::npos) << u;
  EXPECT_TRUE(ParseCommandFlags(spec, {"--a_i=5"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_a_i), 5);
  const CommandSpec other{"prog", "", {""}, "some/other_file.cc"};
  EXPECT_EQ(CommandUsage(other).find("--a_i"), std::string::npos);
}

TEST(FlagsTest, CheckFlagNamesTheFlag) {
  EXPECT_TRUE(CheckFlag(true, "tp", ">= 1", 0).ok());
  absl::Status s = CheckFlag(false, "tp", ">= 1", 0);
  EXPECT_EQ(s.message(), "--tp must be >= 1, got 0");
}

}  // namespace
}  // namespace hipserve::flags
