// Tests for safetensors: round trip, and truncation detected.
#include "runtime/io/safetensors.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(SafetensorsTest, RoundTripsEveryTensorBitwise) {
  std::string path = ::testing::TempDir() + "/rt.safetensors";
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
  std::string path = ::testing::TempDir() + "/trunc.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"x", {100}, std::vector<float>(100, 1.f)}}).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto out = ReadSafetensors(path);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out.status().message().find("x"), std::string::npos);
}

TEST(SafetensorsTest, ShapeMismatchIsRejectedOnWrite) {
  EXPECT_FALSE(
      WriteSafetensors(::testing::TempDir() + "/bad.safetensors", {{"x", {3}, {1.f}}}).ok());
}

// A file of an 8-byte little-endian header length, `header`, then `data`.
std::string WriteRaw(const std::string& name, const std::string& header, const std::string& data) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  std::ofstream(path, std::ios::binary) << bytes << header << data;
  return path;
}

TEST(SafetensorsTest, WrongJsonTypesAreDataLossNamingTheTensorAndField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"x": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", "dtype"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": ["0", 4]}})", "data_offsets"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1e300]}})", "data_offsets"},
      {R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 4]}})", "data_offsets"},
      {R"({"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "shape"},
      {R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})",
       "shape"},
      {R"({"x": {"dtype": "F32", "shape": [9223372036854775807, 2], "data_offsets": [0, 4]}})",
       "shape"},
  };
  for (const auto& [header, field] : cases) {
    const std::string path = WriteRaw("types.safetensors", header, std::string(4, '\0'));
    auto out = ReadSafetensors(path);
    EXPECT_THAT(out, StatusIs(absl::StatusCode::kDataLoss,
                              AllOf(HasSubstr(path), HasSubstr("x"), HasSubstr(field))))
        << header;
  }
}

TEST(SafetensorsTest, EmptyTensorsRoundTrip) {
  const std::string path = ::testing::TempDir() + "/empty.safetensors";
  ASSERT_THAT(WriteSafetensors(path, {{"e", {0, 3}, {}}, {"s", {1}, {2.f}}}), IsOk());
  auto out = ReadSafetensors(path);
  ASSERT_THAT(out, IsOk());
  EXPECT_TRUE(out->at("e").data.empty());
  EXPECT_EQ(out->at("s").data, std::vector<float>{2.f});
  const std::string raw =
      WriteRaw("empty_raw.safetensors",
               R"({"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})", "");
  EXPECT_THAT(ReadSafetensors(raw), IsOk());
}

}  // namespace
}  // namespace stagehand::runtime
