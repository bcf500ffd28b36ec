// libFuzzer target: safetensors bytes through ReadSafetensors; what it accepts must write
// and read back identically. Not a writer test.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "runtime/io/safetensors.h"
#include "tools/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stagehand::runtime;
  const std::string path = stagehand::fuzz::WriteFuzzFile("in.st", data, size);
  auto tensors = ReadSafetensors(path);
  if (!tensors.ok()) return 0;
  std::vector<NamedTensor> list;
  for (const auto& [name, t] : *tensors) list.push_back(t);
  const std::string out = stagehand::fuzz::FuzzDir() + "/out.st";
  if (!WriteSafetensors(out, list).ok()) std::abort();
  auto back = ReadSafetensors(out);
  if (!back.ok() || back->size() != tensors->size()) std::abort();
  for (const auto& [name, t] : *tensors) {
    const NamedTensor& b = back->at(name);
    if (b.shape != t.shape || b.data.size() != t.data.size()) std::abort();
  }
  return 0;
}
