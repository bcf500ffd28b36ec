// libFuzzer target: llm.c shard bytes through AppendLlmcShard (the header, the token
// count, truncation). Not a writer test.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/data/llmc_shard.h"
#include "tools/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = stagehand::fuzz::WriteFuzzFile("shard.bin", data, size);
  std::vector<int32_t> tokens = {7};  // appended to, as a corpus of several shards is
  (void)stagehand::runtime::LooksLikeLlmcShard(path);
  (void)stagehand::runtime::AppendLlmcShard(path, &tokens);
  return 0;
}
