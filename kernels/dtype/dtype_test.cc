#include "kernels/dtype/dtype.h"

#include "gtest/gtest.h"

namespace hipserve::kernels {
namespace {

TEST(KvDtypeTest, IsTheKvSubsetOfDType) {
  EXPECT_EQ(ToDType(KvDtype::kBf16), DType::kBf16);
  EXPECT_EQ(ToDType(KvDtype::kFp8E5m2), DType::kFp8E5m2);
  EXPECT_EQ(KvDtypeBytes(KvDtype::kBf16), 2);
  EXPECT_EQ(KvDtypeBytes(KvDtype::kFp8E5m2), 1);
  EXPECT_STREQ(KvDtypeName(KvDtype::kBf16), "bf16");
  EXPECT_STREQ(KvDtypeName(KvDtype::kFp8E5m2), "fp8_e5m2");
}

TEST(KvDtypeTest, ValuesOutsideTheEnum) {
  // A KvDtype that is not a KV type (e.g. DType::kFloat32's value) has no size and no name.
  const KvDtype bad = static_cast<KvDtype>(static_cast<int>(DType::kFloat32));
  EXPECT_EQ(KvDtypeBytes(bad), 0);
  EXPECT_STREQ(KvDtypeName(bad), "?");
}

}  // namespace
}  // namespace hipserve::kernels
