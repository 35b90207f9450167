// Safetensors: single file, sharded directory with index, dtypes, and header validation.
#include "worker/loader/safetensors.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/loader/testing/writers.h"

namespace hipserve::worker::loader {
namespace {

using testing::BuildSafetensors;
using testing::PutU64;
using testing::StEntry;
using testing::StFloat;
using testing::WriteFile;

absl::StatusOr<SafetensorsFile> ParseBytes(std::string b) {
  return SafetensorsFile::Parse(FileBytes::FromString(std::move(b), "t.safetensors"));
}

std::string RawHeader(const std::string& json, const std::string& data = "") {
  std::string s;
  PutU64(s, json.size());
  return s + json + data;
}

void ExpectError(absl::Status st, absl::StatusCode code, const std::string& part) {
  EXPECT_EQ(st.code(), code) << st;
  EXPECT_NE(st.message().find(part), std::string::npos) << "'" << part << "' not in: " << st;
}

TEST(SafetensorsTest, SingleFileDtypes) {
  const Tensor a{{2, 2}, {1.0f, -2.0f, 0.5f, 3.25f}};
  const Tensor b{{3}, {0.15625f, -1.0f, 65504.0f}};
  std::vector<StEntry> e = {StFloat("a", a, "F32"),
                            StFloat("b16", b, "F16"),
                            StFloat("bb", b, "BF16"),
                            {"ids", "I64", {2}, std::string(16, '\1')}};
  auto f = ParseBytes(BuildSafetensors(e, {{"format", "pt"}}));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->Read("a")->data, a.data);
  EXPECT_EQ(f->Read("a")->shape, a.shape);
  EXPECT_EQ(f->Read("b16")->data, b.data);
  auto bb = f->Read("bb");
  ASSERT_TRUE(bb.ok());
  EXPECT_EQ(bb->data[0], 0.15625f);
  EXPECT_EQ(bb->data[2], 65536.0f);  // bf16 rounds 65504 up
  ExpectError(f->Read("ids").status(), absl::StatusCode::kUnimplemented, "dtype I64");
  ExpectError(f->Read("zz").status(), absl::StatusCode::kNotFound, "'zz'");
}

TEST(SafetensorsTest, HeaderErrors) {
  ExpectError(ParseBytes("abc").status(), absl::StatusCode::kInvalidArgument, "truncated");
  std::string huge;
  PutU64(huge, 1ull << 40);
  ExpectError(ParseBytes(huge + "{}").status(), absl::StatusCode::kInvalidArgument,
              "exceeds the 100 MiB limit");
  std::string over;
  PutU64(over, 100);
  ExpectError(ParseBytes(over + "{}").status(), absl::StatusCode::kInvalidArgument,
              "header length 100 but the file has only 2 bytes");
  ExpectError(ParseBytes(RawHeader("{not json")).status(), absl::StatusCode::kInvalidArgument,
              "invalid JSON");
  ExpectError(ParseBytes(RawHeader("[1]")).status(), absl::StatusCode::kInvalidArgument,
              "expected a JSON object");
  ExpectError(
      ParseBytes(RawHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"))
          .status(),
      absl::StatusCode::kInvalidArgument, "tensor 'w' data ends at byte 70 past file size 66");
  ExpectError(
      ParseBytes(RawHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"))
          .status(),
      absl::StatusCode::kInvalidArgument, "needs 3 x 4 bytes but data_offsets span 8");
  ExpectError(
      ParseBytes(RawHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "12345678"))
          .status(),
      absl::StatusCode::kInvalidArgument, "reversed");
  ExpectError(
      ParseBytes(RawHeader(R"({"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", "12345678"))
          .status(),
      absl::StatusCode::kInvalidArgument, "unknown dtype 'Q9'");
  ExpectError(ParseBytes(RawHeader(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                                   "12345678"))
                  .status(),
              absl::StatusCode::kInvalidArgument, "not a non-negative integer");
  ExpectError(
      ParseBytes(
          RawHeader(
              R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
              "12345678"))
          .status(),
      absl::StatusCode::kInvalidArgument, "overflows");
  ExpectError(ParseBytes(RawHeader(R"({"w":{"dtype":"F32","shape":[2]}})", "12345678")).status(),
              absl::StatusCode::kInvalidArgument, "no data_offsets");
  ExpectError(
      ParseBytes(
          RawHeader(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})",
                    "12345678"))
          .status(),
      absl::StatusCode::kInvalidArgument, "past file size");
  ExpectError(ParseBytes(RawHeader(R"({"__metadata__":{"a":1}})")).status(),
              absl::StatusCode::kInvalidArgument, "__metadata__ value 'a'");
  // Deeply nested JSON must not blow the stack.
  ExpectError(ParseBytes(RawHeader(std::string(100000, '[') + std::string(100000, ']'))).status(),
              absl::StatusCode::kInvalidArgument, "expected a JSON object");
}

TEST(SafetensorsTest, ShardedDirectoryWithIndex) {
  const std::string dir = testing::MakeTempDir("st_sharded");
  const Tensor a{{2}, {1, 2}}, b{{1, 3}, {3, 4, 5}}, c{{1}, {6}};
  WriteFile(dir + "/model-00001-of-00002.safetensors",
            BuildSafetensors({StFloat("a", a), StFloat("b", b, "F16")}));
  WriteFile(dir + "/model-00002-of-00002.safetensors", BuildSafetensors({StFloat("c", c)}));
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors",
                "b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  auto m = SafetensorsModel::OpenDir(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_files(), 2u);
  EXPECT_EQ(m->Names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(m->Read("b")->data, b.data);
  EXPECT_EQ(m->Read("c")->data, c.data);
  EXPECT_EQ(m->total_bytes(), 8u + 6u + 4u);

  // Index names a tensor its shard does not hold.
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
  ExpectError(SafetensorsModel::OpenDir(dir).status(), absl::StatusCode::kInvalidArgument,
              "tensor 'a' is mapped to 'model-00002-of-00002.safetensors'");
  // Path traversal in a shard name.
  WriteFile(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  ExpectError(SafetensorsModel::OpenDir(dir).status(), absl::StatusCode::kInvalidArgument,
              "plain file name");
  // Missing shard file.
  WriteFile(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"gone.safetensors"}})");
  ExpectError(SafetensorsModel::OpenDir(dir).status(), absl::StatusCode::kNotFound,
              "gone.safetensors");
  // Without an index every *.safetensors file is read; a tensor in two files is an error.
  std::remove((dir + "/model.safetensors.index.json").c_str());
  EXPECT_TRUE(SafetensorsModel::OpenDir(dir).ok());
  WriteFile(dir + "/extra.safetensors", BuildSafetensors({StFloat("c", c)}));
  ExpectError(SafetensorsModel::OpenDir(dir).status(), absl::StatusCode::kInvalidArgument,
              "tensor 'c' appears in both");
}

TEST(SafetensorsTest, SingleFileModel) {
  const std::string dir = testing::MakeTempDir("st_single");
  WriteFile(dir + "/model.safetensors", BuildSafetensors({StFloat("x", Tensor{{1}, {7}})}));
  WriteFile(dir + "/ignored.safetensors", "garbage");  // model.safetensors wins
  auto m = SafetensorsModel::OpenDir(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->Read("x")->data, std::vector<float>{7});
  ExpectError(SafetensorsModel::OpenDir(dir + "/nope").status(), absl::StatusCode::kNotFound,
              "nope");
}

}  // namespace
}  // namespace hipserve::worker::loader
