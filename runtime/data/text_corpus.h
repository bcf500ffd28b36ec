// Byte-level text corpus: reads a text file or a folder of text files into byte tokens,
// splits off a held-out tail, and samples (tokens, targets) windows deterministically.
// Not a tokenizer zoo or a streaming loader: the whole corpus is held in memory.
#ifndef STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_
#define STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime {

// Debian's `fortunes` package: plain-text fortune files (the .dat indexes are skipped).
inline constexpr char kDefaultCorpus[] = "/usr/share/games/fortunes";

struct Corpus {
  std::vector<int32_t> train;       // byte tokens in [0, 256)
  std::vector<int32_t> validation;  // the held-out tail
  int num_files = 0;
};

// Reads `path`: a regular file, or a folder whose regular files (recursively, sorted by
// path; symbolic links and files with a NUL byte in their first 4 KiB skipped) are
// concatenated. NotFound for a missing path, InvalidArgument for an empty corpus.
absl::StatusOr<std::string> ReadTextPath(const std::string& path);

// Byte tokens of `path`, the last `validation_fraction` held out. Both parts must hold at
// least `min_tokens` tokens (a window of seq_len + 1), else InvalidArgument.
absl::StatusOr<Corpus> LoadByteCorpus(const std::string& path, double validation_fraction,
                                      int64_t min_tokens);

// Deterministic windows: the window of (step, microbatch) depends only on the seed, so any
// stage, process or resumed run draws the same batch.
class WindowSampler {
 public:
  WindowSampler(const std::vector<int32_t>* tokens, int micro_batch_size, int seq_len,
                uint64_t seed);
  // tokens (B, T) and targets (B, T) = the same windows shifted by one.
  void Sample(int64_t step, int microbatch, int32_t* tokens, int32_t* targets) const;

 private:
  const std::vector<int32_t>* data_;
  int B_, T_;
  uint64_t seed_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_
