// GgufFile parsing: every metadata type, tensor infos, alignment, and precise errors on
// malformed files (built with the test GgufWriter or by hand).
#include "worker/loader/gguf.h"

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/loader/testing/writers.h"

namespace hipserve::worker::loader {
namespace {

using testing::GgufWriter;
using testing::PutStr;
using testing::PutU32;
using testing::PutU64;

absl::StatusOr<GgufFile> ParseBytes(std::string bytes) {
  return GgufFile::Parse(FileBytes::FromString(std::move(bytes), "test.gguf"));
}

// Expects an error of `code` whose message contains every string of `parts`.
void ExpectError(const absl::StatusOr<GgufFile>& r, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status();
  for (const auto& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "'" << p << "' not in: " << r.status();
  }
}

std::string Scalar(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

TEST(GgufTest, AllMetadataTypes) {
  GgufWriter w;
  const uint8_t u8 = 200;
  const int8_t i8 = -100;
  const uint16_t u16 = 60000;
  const int16_t i16 = -30000;
  const int64_t i64 = -(1ll << 40);
  w.AddRaw("u8", GgufType::kUint8, Scalar(&u8, 1));
  w.AddRaw("i8", GgufType::kInt8, Scalar(&i8, 1));
  w.AddRaw("u16", GgufType::kUint16, Scalar(&u16, 2));
  w.AddRaw("i16", GgufType::kInt16, Scalar(&i16, 2));
  w.AddU32("u32", 4000000000u);
  w.AddI32("i32", -2000000000);
  w.AddF32("f32", 0.5f);
  w.AddBool("bool", true);
  w.AddString("str", "hello");
  w.AddU64("u64", std::numeric_limits<uint64_t>::max());
  w.AddRaw("i64", GgufType::kInt64, Scalar(&i64, 8));
  w.AddF64("f64", 1e100);
  w.AddStringArray("strs", {"a", "", "ccc"});
  w.AddI32Array("ints", {1, -2, 3});
  w.AddF32Array("floats", {1.5f, -2.5f});
  // Nested: array of 2 arrays of uint8.
  std::string nested;
  PutU32(nested, static_cast<uint32_t>(GgufType::kArray));
  PutU64(nested, 2);
  for (int k = 0; k < 2; ++k) {
    PutU32(nested, static_cast<uint32_t>(GgufType::kUint8));
    PutU64(nested, 3);
    nested += std::string{char(k), char(k + 1), char(k + 2)};
  }
  w.AddRaw("nested", GgufType::kArray, nested);
  auto r = ParseBytes(w.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  const GgufFile& g = *r;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 16u);
  EXPECT_EQ(*g.GetUint("u8"), 200u);
  EXPECT_EQ(*g.GetInt("i8"), -100);
  EXPECT_EQ(*g.GetUint("u16"), 60000u);
  EXPECT_EQ(*g.GetInt("i16"), -30000);
  EXPECT_EQ(*g.GetUint("u32"), 4000000000u);
  EXPECT_EQ(*g.GetInt("i32"), -2000000000);
  EXPECT_EQ(*g.GetFloat("f32"), 0.5);
  EXPECT_EQ(*g.GetBool("bool"), true);
  EXPECT_EQ(*g.GetString("str"), "hello");
  EXPECT_EQ(*g.GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(g.GetInt("u64").ok());  // does not fit int64
  EXPECT_EQ(*g.GetInt("i64"), i64);
  EXPECT_FALSE(g.GetUint("i64").ok());  // negative
  EXPECT_EQ(*g.GetFloat("f64"), 1e100);
  EXPECT_EQ(*g.GetStringArray("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(*g.GetIntArray("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(g.Find("floats")->floats, (std::vector<double>{1.5, -2.5}));
  const GgufValue* n = g.Find("nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->arrays[1].ints, (std::vector<int64_t>{1, 2, 3}));
  // Wrong-type and missing lookups name the key and the types.
  auto s = g.GetString("u32");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("'u32' has type uint32, expected string"), std::string::npos)
      << s.status();
  EXPECT_EQ(g.GetUint("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(g.GetStringArray("ints").ok());
}

TEST(GgufTest, TensorsV2AndAlignment) {
  for (uint32_t version : {2u, 3u}) {
    for (uint32_t align : {32u, 64u, 1u}) {
      GgufWriter w;
      w.SetVersion(version);
      if (align != 32) w.SetAlignment(align);
      Tensor a{{2, 3}, {1, 2, 3, 4, 5, 6}};
      w.AddFloatTensor("a", a);
      w.AddFloatTensor("b", Tensor{{3}, {0.5f, -1, 2}}, GgmlType::kF16);
      std::string q8;  // one Q8_0 block: d = 1, q = 0..31
      q8 += std::string("\x00\x3c", 2);
      for (int i = 0; i < 32; ++i) q8.push_back(static_cast<char>(i));
      w.AddTensor("c", {32, 1}, GgmlType::kQ8_0, q8);
      auto r = ParseBytes(w.Build());
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->version(), version);
      EXPECT_EQ(r->alignment(), align);
      EXPECT_EQ(r->data_offset() % align, 0u);
      ASSERT_EQ(r->tensors().size(), 3u);
      const GgufTensorInfo* info = r->FindTensor("a");
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(info->ne, (std::vector<int64_t>{3, 2}));
      EXPECT_EQ(info->Shape(), (std::vector<int64_t>{2, 3}));
      auto t = r->ReadTensor("a");
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->shape, a.shape);
      EXPECT_EQ(t->data, a.data);
      EXPECT_EQ(r->ReadTensor("b")->data, (std::vector<float>{0.5f, -1, 2}));
      auto c = r->ReadTensor("c");
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_EQ(c->shape, (std::vector<int64_t>{1, 32}));
      EXPECT_EQ(c->data[31], 31.0f);
      EXPECT_EQ(r->ReadTensor("zz").status().code(), absl::StatusCode::kNotFound);
    }
  }
}

TEST(GgufTest, EmptyTensor) {
  GgufWriter w;
  w.AddTensor("empty", {0, 4}, GgmlType::kQ8_0, "");
  auto r = ParseBytes(w.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = r->ReadTensor("empty");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->shape, (std::vector<int64_t>{4, 0}));
  EXPECT_TRUE(t->data.empty());
}

TEST(GgufTest, UnsupportedTensorTypeParsesButDoesNotDecode) {
  GgufWriter w;
  w.AddTensor("blk.0.ffn_up.weight", {256, 1}, GgmlType::kQ4_K, std::string(144, '\0'));
  auto r = ParseBytes(w.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = r->ReadTensor("blk.0.ffn_up.weight");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("'blk.0.ffn_up.weight' has type Q4_K"), std::string::npos)
      << t.status();
}

// A minimal header by hand: magic, version, counts.
std::string Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::string s = "GGUF";
  PutU32(s, version);
  PutU64(s, n_tensors);
  PutU64(s, n_kv);
  return s;
}

TEST(GgufErrorTest, HeaderProblems) {
  ExpectError(ParseBytes("GGU"), absl::StatusCode::kInvalidArgument, {"truncated", "magic"});
  ExpectError(ParseBytes("GGML" + std::string(20, '\0')), absl::StatusCode::kInvalidArgument,
              {"bad magic", "not a GGUF file"});
  ExpectError(ParseBytes(Header(1, 0, 0)), absl::StatusCode::kUnimplemented, {"version 1"});
  ExpectError(ParseBytes(Header(7, 0, 0)), absl::StatusCode::kInvalidArgument,
              {"unsupported version 7"});
  ExpectError(ParseBytes(Header(0x03000000, 0, 0)), absl::StatusCode::kUnimplemented,
              {"big-endian"});
  ExpectError(ParseBytes(Header(3, 0, 1ull << 60)), absl::StatusCode::kInvalidArgument,
              {"metadata count 1152921504606846976 cannot fit"});
  ExpectError(ParseBytes(Header(3, std::numeric_limits<uint64_t>::max(), 0)),
              absl::StatusCode::kInvalidArgument, {"tensor count"});
  EXPECT_TRUE(ParseBytes(Header(3, 0, 0)).ok());
}

TEST(GgufErrorTest, MetadataProblems) {
  {  // huge string length
    std::string s = Header(3, 0, 1);
    PutU64(s, 1ull << 62);
    s += "key" + std::string(16, '\0');
    ExpectError(ParseBytes(s), absl::StatusCode::kInvalidArgument,
                {"key #0 has length 4611686018427387904", "only 19 bytes remain"});
  }
  {  // unknown value type
    std::string s = Header(3, 0, 1);
    PutStr(s, "k");
    PutU32(s, 13);
    s += std::string(16, '\0');
    ExpectError(ParseBytes(s), absl::StatusCode::kInvalidArgument,
                {"key 'k' has unknown value type 13"});
  }
  {  // huge array count
    std::string s = Header(3, 0, 1);
    PutStr(s, "arr");
    PutU32(s, static_cast<uint32_t>(GgufType::kArray));
    PutU32(s, static_cast<uint32_t>(GgufType::kUint32));
    PutU64(s, 1ull << 61);
    s += std::string(16, '\0');
    ExpectError(ParseBytes(s), absl::StatusCode::kInvalidArgument,
                {"key 'arr': array of 2305843009213693952 uint32 elements"});
  }
  {  // bool out of range
    GgufWriter w;
    w.AddRaw("b", GgufType::kBool, std::string(1, '\x02'));
    ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument, {"bool value 2"});
  }
  {  // duplicate key
    GgufWriter w;
    w.AddU32("x", 1);
    w.AddU32("x", 2);
    ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument,
                {"duplicate metadata key 'x'"});
  }
  {  // bad alignment values and type
    for (uint32_t a : {0u, 3u, 48u}) {
      GgufWriter w;
      w.SetAlignment(a);
      ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument,
                  {"general.alignment", "power of two"});
    }
    GgufWriter w;
    w.AddU64("general.alignment", 32);
    ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument,
                {"general.alignment has type uint64"});
  }
  {  // nesting too deep
    std::string v;
    for (int d = 0; d < 6; ++d) {
      PutU32(v, static_cast<uint32_t>(GgufType::kArray));
      PutU64(v, 1);
    }
    v += std::string(64, '\0');
    GgufWriter w;
    w.AddRaw("deep", GgufType::kArray, v);
    ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument, {"nested deeper"});
  }
}

std::string OneTensorFile(uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type, uint64_t offset,
                          size_t data_bytes) {
  std::string s = Header(3, 1, 0);
  PutStr(s, "blk.3.ffn_up.weight");
  PutU32(s, n_dims);
  for (uint64_t d : ne) PutU64(s, d);
  PutU32(s, type);
  PutU64(s, offset);
  s.append((32 - s.size() % 32) % 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

TEST(GgufErrorTest, TensorProblems) {
  const uint32_t f32 = static_cast<uint32_t>(GgmlType::kF32);
  EXPECT_TRUE(ParseBytes(OneTensorFile(2, {4, 2}, f32, 0, 32)).ok());
  ExpectError(ParseBytes(OneTensorFile(2, {4, 2}, f32, 0, 31)), absl::StatusCode::kInvalidArgument,
              {"tensor 'blk.3.ffn_up.weight' (F32, 32 bytes) data ends at byte", "past file size"});
  ExpectError(ParseBytes(OneTensorFile(2, {4, 2}, f32, 64, 32)), absl::StatusCode::kInvalidArgument,
              {"data ends at byte", "past file size"});
  ExpectError(ParseBytes(OneTensorFile(2, {4, 2}, f32, 0xFFFFFFFFFFFFFFE0ull, 32)),
              absl::StatusCode::kInvalidArgument, {"data ends at byte > 2^64"});
  ExpectError(ParseBytes(OneTensorFile(2, {4, 2}, f32, 4, 64)), absl::StatusCode::kInvalidArgument,
              {"offset 4 is not a multiple of the 32-byte"});
  ExpectError(ParseBytes(OneTensorFile(0, {}, f32, 0, 32)), absl::StatusCode::kInvalidArgument,
              {"has 0 dimensions"});
  ExpectError(ParseBytes(OneTensorFile(5, {1, 1, 1, 1, 1}, f32, 0, 32)),
              absl::StatusCode::kInvalidArgument, {"has 5 dimensions"});
  ExpectError(ParseBytes(OneTensorFile(2, {4, 2}, 77, 0, 32)), absl::StatusCode::kInvalidArgument,
              {"unknown ggml type 77"});
  ExpectError(ParseBytes(OneTensorFile(2, {16, 2}, static_cast<uint32_t>(GgmlType::kQ8_0), 0, 64)),
              absl::StatusCode::kInvalidArgument, {"row length 16", "Q8_0 block size 32"});
  ExpectError(ParseBytes(OneTensorFile(2, {1ull << 62, 1ull << 62}, f32, 0, 32)),
              absl::StatusCode::kInvalidArgument, {"element count overflows"});
  ExpectError(ParseBytes(OneTensorFile(1, {1ull << 62}, f32, 0, 32)),
              absl::StatusCode::kInvalidArgument, {"overflow a 64-bit byte count"});
  ExpectError(ParseBytes(OneTensorFile(1, {0x8000000000000000ull}, f32, 0, 32)),
              absl::StatusCode::kInvalidArgument, {"negative dimension"});
  {
    GgufWriter w;
    w.AddFloatTensor("t", Tensor{{1}, {1}});
    w.AddFloatTensor("t", Tensor{{1}, {2}});
    ExpectError(ParseBytes(w.Build()), absl::StatusCode::kInvalidArgument,
                {"duplicate tensor name 't'"});
  }
}

TEST(GgufErrorTest, OpenNamesMissingFile) {
  auto r = GgufFile::Open("/nonexistent/model.gguf");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::worker::loader
