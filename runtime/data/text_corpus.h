// Text corpora (a file or a folder of text files) as bytes, and deterministic sampling of
// (tokens, targets) windows: random offsets, or packed sequences in a seeded shuffled order.
// Files are mapped and visited one at a time (ForEachTextFile), so reading costs one mapped
// file, not the whole text, in memory. Not a tokenizer (tokenizer.h).
#ifndef STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_
#define STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

// The most bytes of text a corpus may hold (a larger one is ResourceExhausted, named): its
// tokens are held in memory.
inline constexpr uint64_t kMaxTextCorpusBytes = uint64_t{1} << 31;

// Visits the text files of `path` in the order ReadTextPath concatenates them, each mapped
// read-only (runtime/io/mapped_file.h) only while `visit` runs: the bytes are valid during
// the call only. The errors of ReadTextPath, and InvalidArgument naming the file and the
// offset for a NUL byte in a file that is read as text (a binary file given as --data, or
// one in a folder whose first 4 KiB look like text); an error of `visit` stops the walk
// and is returned.
absl::Status ForEachTextFile(
    const std::string& path,
    const std::function<absl::Status(const std::string& file, absl::string_view text)>& visit);

// The same files one by one: (path, contents), in the order ReadTextPath concatenates them.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadTextFiles(
    const std::string& path);

// Byte tokens of `path`, the last `validation_fraction` held out. Both parts must hold at
// least `min_tokens` tokens (a window of seq_len + 1), else InvalidArgument.
absl::StatusOr<Corpus> LoadByteCorpus(const std::string& path, double validation_fraction,
                                      int64_t min_tokens);

// How long the microbatches of a step are (--seq_len_policy). kFixed: every microbatch is
// B x seq_len tokens. kVariable: microbatch m of step s is B x T_m tokens, T_m =
// MicrobatchLength(...) <= seq_len, with B x T_m <= the token budget (--microbatch_tokens).
enum class SeqLenPolicy { kFixed, kVariable };

// Deterministic windows: the window of (step, microbatch) depends only on the seed, so any
// stage, process or resumed run draws the same batch.
class WindowSampler {
 public:
  // Windows at independent random offsets of `tokens` (sampling with replacement).
  WindowSampler(const std::vector<int32_t>* tokens, int micro_batch_size, int seq_len,
                uint64_t seed);
  // Packed sequences: sequence i is tokens[starts[i], starts[i] + seq_len] (each start at
  // most tokens.size() - seq_len - 1), visited once per epoch in an order shuffled by
  // (seed, epoch). Row b of (step, microbatch) is position
  // ((step - 1) * num_microbatches + microbatch) * micro_batch_size + b of that sequence of
  // epochs, so steps 1, 2, ... walk the epochs in order and step 0 (evaluation) is valid too.
  WindowSampler(const std::vector<int32_t>* tokens, const std::vector<int64_t>* starts,
                int micro_batch_size, int seq_len, int num_microbatches, uint64_t seed);
  // Microbatch lengths (--seq_len_policy, --microbatch_tokens, validated by
  // ValidateMicrobatchTokens): under kVariable, (step, microbatch) draws B rows of
  // Length(step, microbatch) tokens, the first tokens of its fixed-length windows. Default:
  // kFixed, every microbatch B x seq_len. `microbatch` is the step's global index (replica d's
  // mb is d x M + mb under --dp), as for the windows, so every layout draws the same lengths.
  void SetSeqLenPolicy(SeqLenPolicy policy, int64_t microbatch_tokens) {
    policy_ = policy;
    microbatch_tokens_ = microbatch_tokens;
  }
  bool variable_lengths() const { return policy_ == SeqLenPolicy::kVariable; }
  // T_m of (step, microbatch): MicrobatchLength(policy, seed, step, microbatch, B, seq_len,
  // microbatch_tokens); seq_len under kFixed.
  int Length(int64_t step, int microbatch) const;
  // Tokens of the step's first `microbatches` microbatches: the sum of B x Length.
  int64_t StepTokens(int64_t step, int microbatches) const;
  // tokens (B, T_m) and targets (B, T_m) = the same windows shifted by one; T_m =
  // Length(step, microbatch).
  void Sample(int64_t step, int microbatch, int32_t* tokens, int32_t* targets) const;
  // Packed documents (--packing=documents): `document_starts` (sorted, not owned; null: none)
  // are the offsets into the tokens where a document begins.
  void SetDocuments(const std::vector<int64_t>* document_starts) { documents_ = document_starts; }
  bool has_documents() const { return documents_ != nullptr; }
  // The documents of Sample(step, microbatch)'s windows (has_documents() only):
  // doc_start (B, T_m): the position in its row where token t's document begins (0 when it
  // began before the window), and loss_mask (B, T_m): 0 where target t (token t + 1 of the
  // stream) begins another document (a prediction across a boundary), else 1.
  void SampleDocuments(int64_t step, int microbatch, int32_t* doc_start, uint8_t* loss_mask) const;
  // Epochs completed by the end of `step` (packed sequences only; 0 otherwise).
  double Epochs(int64_t step) const;
  // A batch-size ramp-up (runtime/train/batch_rampup.h): step s's microbatch 0 is the
  // `first[s]`th microbatch of the sequence of epochs (packed sequences), in place of
  // (s - 1) * num_microbatches; `first` covers steps 0 .. last + 1. Empty: the fixed M.
  void SetFirstMicrobatches(std::vector<int64_t> first) { first_ = std::move(first); }

 private:
  const std::vector<int32_t>* data_;
  // Where row b of (step, microbatch) starts in the tokens.
  int64_t RowStart(int64_t step, int microbatch, int b) const;

  const std::vector<int64_t>* starts_ = nullptr;     // null: random offsets
  const std::vector<int64_t>* documents_ = nullptr;  // null: no document boundaries
  int B_, T_;
  int M_ = 1;
  std::vector<int64_t> first_;  // empty: (step - 1) * M_
  uint64_t seed_;
  SeqLenPolicy policy_ = SeqLenPolicy::kFixed;
  int64_t microbatch_tokens_ = 0;
};

// "fixed" or "variable"; InvalidArgument naming --seq_len_policy otherwise.
absl::StatusOr<SeqLenPolicy> ParseSeqLenPolicy(const std::string& text);
// The token budget per microbatch against B and seq_len: kFixed takes none (0); kVariable
// needs B <= microbatch_tokens (so T_m >= 1). InvalidArgument naming --microbatch_tokens.
absl::Status ValidateMicrobatchTokens(SeqLenPolicy policy, int micro_batch_size, int seq_len,
                                      int64_t microbatch_tokens);
// T_m of (step, microbatch): seq_len under kFixed; under kVariable uniform in
// [1, min(seq_len, microbatch_tokens / micro_batch_size)], a pure function of
// (seed, step, microbatch), so every stage and process draws the same length.
int MicrobatchLength(SeqLenPolicy policy, uint64_t seed, int64_t step, int microbatch,
                     int micro_batch_size, int seq_len, int64_t microbatch_tokens);

// The row length of a microbatch for logs: "64 tokens" (kFixed, seq_len 64), or under kVariable
// "T_m tokens (--seq_len_policy=variable: T_m in [1, 32], --microbatch_tokens=128)".
std::string DescribeMicrobatchLength(SeqLenPolicy policy, int micro_batch_size, int seq_len,
                                     int64_t microbatch_tokens);

// A seeded bijection of [0, n) (a Feistel network with cycle walking): position -> index.
uint64_t ShufflePosition(uint64_t position, uint64_t n, uint64_t key);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_TEXT_CORPUS_H_
