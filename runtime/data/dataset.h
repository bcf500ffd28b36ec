// Training data from text (tokenised once and cached), Megatron indexed datasets or llm.c
// shards: one token stream packed into sequences of seq_len + 1 tokens, split into training
// and held-out sequences. Not a sampler (WindowSampler in text_corpus.h draws the batches).
#ifndef STAGEHAND_RUNTIME_DATA_DATASET_H_
#define STAGEHAND_RUNTIME_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/tokenizer.h"

namespace stagehand::runtime {

// How sequences are cut from the stream. kStream: windows of seq_len + 1 tokens that attend
// across document boundaries (GPT-2 / llm.c training). kDocuments: the same windows, but each
// token attends only within its document (per-document causal masks), and the loss of a
// target that begins another document is masked out (runtime/data/text_corpus.h).
enum class Packing { kStream, kDocuments };
// "stream" or "documents"; InvalidArgument naming --packing otherwise.
absl::StatusOr<Packing> ParsePacking(const std::string& text);

struct DatasetOptions {
  // A text file or folder, a Megatron prefix (PREFIX, PREFIX.idx or PREFIX.bin), an llm.c
  // shard, or a folder of llm.c shards (*.bin, sorted by name).
  std::string path = kDefaultCorpus;
  std::string format = "auto";  // auto, text, megatron or llmc
  // Held-out data in files of its own (any format above); empty: hold out a
  // validation_fraction of the sequences of `path`.
  std::string validation_path;
  double validation_fraction = 0.1;
  int seq_len = 64;
  // Where tokenised text is cached (as llm.c shards keyed by tokenizer and contents);
  // empty: DefaultTokenCacheDir(); "none": no cache. Byte tokens are never cached.
  std::string cache_dir;
  Packing packing = Packing::kStream;
  // --seq_len_policy / --microbatch_tokens: the training sampler's microbatch lengths
  // (WindowSampler::SetSeqLenPolicy); held-out batches are always B x seq_len.
  SeqLenPolicy seq_len_policy = SeqLenPolicy::kFixed;
  int64_t microbatch_tokens = 0;
  // With the byte tokenizer, documents also begin after each occurrence of this text in a
  // file (e.g. "\n%\n" between fortunes); empty: files only. Needs kDocuments.
  std::string document_separator;
};

// One split: sequence i is tokens[starts[i], starts[i] + seq_len] (seq_len + 1 tokens, the
// last one the target of the one before).
// The documents of the stream (for --packing=documents) are where the data says they begin:
// a Megatron dataset's documents (doc_idx); the files of a text corpus (with a tokenizer that
// has an end-of-text token, which ends each file: after each such token), and with the byte
// tokenizer the text after each DatasetOptions::document_separator; an llm.c shard's
// <|endoftext|> tokens (which begin each document).
struct TokenSplit {
  std::shared_ptr<const std::vector<int32_t>> tokens;  // may be shared by both splits
  std::vector<int64_t> starts;
  // Sorted document starts in tokens; null unless --packing=documents (the sampler of the
  // split then draws the documents of its windows).
  std::shared_ptr<const std::vector<int64_t>> documents;
};


struct Dataset {
  std::string format;       // text, megatron or llmc
  std::string description;  // for logs: files, tokens, cache use
  int64_t num_tokens = 0;   // of `path` (and validation_path)
  TokenSplit train, validation;
};

// $XDG_CACHE_HOME/stagehand/tokens, else $HOME/.cache/stagehand/tokens.
std::string DefaultTokenCacheDir();

// Sequence starts of a stream of n tokens packed into windows of seq_len + 1 tokens that
// overlap by one (the target of one window's last token is the next window's first).
std::vector<int64_t> PackSequences(int64_t num_tokens, int seq_len);

// Reads and checks the data. NotFound / DataLoss from the readers (a truncated .idx, a wrong
// magic); InvalidArgument for a token id past `tokenizer`'s vocabulary (naming the id, its
// position and file) or a split without a single sequence.
absl::StatusOr<Dataset> LoadDataset(const DatasetOptions& options, const Tokenizer& tokenizer);

// The sampler of one split (must outlive it): packed sequences in a seeded order.
WindowSampler MakeSampler(const TokenSplit& split, int micro_batch_size, int seq_len,
                          int num_microbatches, uint64_t seed);

// The seed of the held-out batches' order for a run seeded `seed`.
inline uint64_t HeldOutOrderSeed(uint64_t seed) { return seed ^ 0x5EEDull; }
// The held-out batches every evaluation draws (batch b is Sample(b, 0)): one process, each
// cluster rank and the tests draw them here, so that their held-out losses agree bitwise.
WindowSampler MakeHeldOutSampler(const TokenSplit& validation, int micro_batch_size, int seq_len,
                                 uint64_t seed);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_DATASET_H_
