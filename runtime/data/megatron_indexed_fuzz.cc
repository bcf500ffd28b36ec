// libFuzzer target: a Megatron PREFIX.idx / PREFIX.bin pair through ReadMegatronIndexed.
// The input is the .idx, then the 8 bytes "--BIN--\n", then the .bin (no marker: no .bin).
// Not a writer test.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/data/megatron_indexed.h"
#include "tools/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t cut = bytes.find("--BIN--\n");
  const std::string idx = bytes.substr(0, cut);
  const std::string bin = cut == std::string::npos ? "" : bytes.substr(cut + 8);
  using stagehand::fuzz::WriteFuzzFile;
  WriteFuzzFile("corpus.idx", reinterpret_cast<const uint8_t*>(idx.data()), idx.size());
  const std::string path =
      WriteFuzzFile("corpus.bin", reinterpret_cast<const uint8_t*>(bin.data()), bin.size());
  (void)stagehand::runtime::LooksLikeMegatronIndexed(path);
  (void)stagehand::runtime::ReadMegatronIndexed(path);
  return 0;
}
