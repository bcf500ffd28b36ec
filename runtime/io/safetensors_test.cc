// Tests for safetensors: round trip, and truncation detected.
#include "runtime/io/safetensors.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(SafetensorsTest, RoundTripsEveryTensorBitwise) {
  std::string path = testing::TempDir() + "/rt.safetensors";
  std::vector<NamedTensor> in = {{"wte", {2, 3}, {1, 2, 3, 4, 5, -6.5f}}, {"b", {1}, {0.25f}}};
  ASSERT_TRUE(WriteSafetensors(path, in).ok());
  auto out = ReadSafetensors(path);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ(out->at("wte").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(out->at("wte").data, in[0].data);
  EXPECT_EQ(out->at("b").data, in[1].data);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsTest, TruncatedFileIsDataLoss) {
  std::string path = testing::TempDir() + "/trunc.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"x", {100}, std::vector<float>(100, 1.f)}}).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto out = ReadSafetensors(path);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out.status().message().find("x"), std::string::npos);
}

TEST(SafetensorsTest, ShapeMismatchIsRejectedOnWrite) {
  EXPECT_FALSE(WriteSafetensors(testing::TempDir() + "/bad.safetensors", {{"x", {3}, {1.f}}}).ok());
}

}  // namespace
}  // namespace stagehand::runtime
