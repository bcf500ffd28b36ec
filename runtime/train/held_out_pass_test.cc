// Tests for the held-out pass across ranks: three ranks (threads with a UCX transport each,
// chunks placed in a V as dualpipe_v does) give bitwise the loss of Evaluate on the whole
// model; a malformed placement is refused; a wait is given up when the caller says stop.
#include "runtime/train/held_out_pass.h"

#include <cstring>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "models/gpt_config.h"

namespace stagehand::runtime {
namespace {

std::vector<int32_t> SyntheticText() {
  std::string s;
  for (int i = 0; i < 200; ++i) s += "held-out text moves between ranks, chunk by chunk. ";
  return std::vector<int32_t>(s.begin(), s.end());
}

constexpr int kB = 2, kT = 16, kC = 24;

struct Ranks {
  std::vector<std::unique_ptr<Chunk>> chunks;
  std::vector<std::unique_ptr<UcxTransport>> transports;
};

// `num_chunks` chunks of a 6-layer model and one connected transport per rank.
Ranks Build(int num_chunks, int num_ranks) {
  Ranks r;
  auto built = BuildChunks(models::UniformGpt(6, kC, 2, 256, kT, 11), num_chunks,
                           models::ChunkOptions{kB, kT, 2});
  EXPECT_TRUE(built.ok()) << built.status();
  r.chunks = std::move(*built);
  for (int i = 0; i < num_ranks; ++i) {
    auto t = UcxTransport::Create();
    EXPECT_TRUE(t.ok()) << t.status();
    r.transports.push_back(std::move(*t));
  }
  for (int i = 0; i < num_ranks; ++i) {
    for (int j = 0; j < num_ranks; ++j) {
      if (i != j) {
        EXPECT_TRUE(r.transports[i]->Connect(j, r.transports[j]->address()).ok());
      }
    }
  }
  return r;
}

HeldOutPassInit InitFor(Ranks& r, int rank, const std::vector<int>& chunk_rank,
                        const WindowSampler* sampler) {
  HeldOutPassInit in;
  in.rank = rank;
  in.chunk_rank = chunk_rank;
  for (size_t c = 0; c < chunk_rank.size(); ++c) {
    if (chunk_rank[c] == rank) in.chunks[static_cast<int>(c)] = r.chunks[c].get();
  }
  in.sampler = sampler;
  in.transport = r.transports[rank].get();
  in.tensor_floats = kB * kT * kC;
  return in;
}

TEST(HeldOutPass, ThreeRanksInAVGiveBitwiseTheOneProcessLoss) {
  const std::vector<int> chunk_rank = {0, 1, 2, 2, 1, 0};
  Ranks r = Build(6, 3);
  static const std::vector<int32_t> data = SyntheticText();
  WindowSampler sampler(&data, kB, kT, 3);
  std::vector<Chunk*> all;
  for (auto& c : r.chunks) all.push_back(c.get());
  absl::StatusOr<double> expected = Evaluate(all, sampler, 5);
  ASSERT_TRUE(expected.ok()) << expected.status();

  std::vector<absl::StatusOr<std::optional<double>>> got(3, std::optional<double>());
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 3; ++rank) {
    threads.emplace_back(
        [&, rank] { got[rank] = RunHeldOutPass(InitFor(r, rank, chunk_rank, &sampler), 7, 5); });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < 3; ++rank)
    ASSERT_TRUE(got[rank].ok()) << "rank " << rank << ": " << got[rank].status();
  ASSERT_TRUE(got[0]->has_value()) << "rank 0 holds the last chunk";
  EXPECT_FALSE(got[1]->has_value());
  EXPECT_FALSE(got[2]->has_value());
  const double loss = **got[0];
  EXPECT_EQ(std::memcmp(&loss, &*expected, sizeof(double)), 0)
      << loss << " vs one process " << *expected;
}

TEST(HeldOutPass, AChunkThePlacementPutsElsewhereIsRefused) {
  Ranks r = Build(2, 2);
  static const std::vector<int32_t> data = SyntheticText();
  WindowSampler sampler(&data, kB, kT, 3);
  HeldOutPassInit in = InitFor(r, 0, {0, 1}, &sampler);
  in.chunks[1] = r.chunks[1].get();  // rank 1's
  absl::StatusOr<std::optional<double>> got = RunHeldOutPass(in, 1, 2);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
  EXPECT_NE(got.status().message().find("chunk 1"), absl::string_view::npos) << got.status();
}

TEST(HeldOutPass, BatchCountsPastTheTagsRangeAreRefused) {
  Ranks r = Build(2, 2);
  static const std::vector<int32_t> data = SyntheticText();
  WindowSampler sampler(&data, kB, kT, 3);
  absl::StatusOr<std::optional<double>> got =
      RunHeldOutPass(InitFor(r, 0, {0, 1}, &sampler), 1, kHeldOutMaxBatches + 1);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
}

TEST(HeldOutPass, AWaitForAnInputThatNeverComesEndsWhenTheCallerSaysStop) {
  Ranks r = Build(2, 2);
  static const std::vector<int32_t> data = SyntheticText();
  WindowSampler sampler(&data, kB, kT, 3);
  std::atomic<bool> stop{false};
  HeldOutPassInit in = InitFor(r, 1, {0, 1}, &sampler);  // rank 0 never runs
  in.stop = &stop;
  std::string last_note;
  in.note = [&](const std::string& what) { last_note = what; };
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  absl::StatusOr<std::optional<double>> got = RunHeldOutPass(in, 3, 2);
  stopper.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kCancelled) << got.status();
  EXPECT_NE(got.status().message().find("batch 0 into chunk 1"), absl::string_view::npos)
      << got.status();
  EXPECT_NE(last_note.find("waiting for"), std::string::npos) << last_note;
}

}  // namespace
}  // namespace stagehand::runtime
