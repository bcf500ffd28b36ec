// Tests for the CPU causal attention: the B call against finite differences, an exact causal
// mask, a naive reference across row blocks, accumulation, float vs double, determinism.
#include "ops/cpu/attention.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Cast;
using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

// Letters: B batch, T time, C channels, NH heads, hs = C / NH.
constexpr int B = 2;
constexpr int T = 5;
constexpr int C = 12;
constexpr int NH = 3;
constexpr double kTolerance = 1e-6;

struct AttentionCase {
  std::vector<double> qkv = RandomVector(B * T * 3 * C, 1);       // (B, T, 3C)
  std::vector<double> probe = RandomVector(B * T * C, 2);         // (B, T, C) loss = <probe, out>
  std::vector<double> out = std::vector<double>(B * T * C);       // (B, T, C)
  std::vector<double> att = std::vector<double>(B * NH * T * T);  // (B, NH, T, T)

  double Loss() {
    AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return Dot(probe, out);
  }
};

// llm.c's attention_forward / attention_backward loops, in double: the reference.
void NaiveAttentionForward(std::vector<double>* out, std::vector<double>* att,
                           const std::vector<double>& qkv, int b_size, int t_size, int c_size,
                           int heads) {
  const int hs = c_size / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < b_size; ++b) {
    for (int t = 0; t < t_size; ++t) {
      for (int h = 0; h < heads; ++h) {
        const double* q = &qkv[(b * t_size + t) * 3 * c_size + h * hs];
        double* row = &(*att)[((b * heads + h) * t_size + t) * t_size];
        double max_score = -INFINITY;
        for (int t2 = 0; t2 <= t; ++t2) {
          const double* k = &qkv[(b * t_size + t2) * 3 * c_size + c_size + h * hs];
          double dot = 0.0;
          for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
          row[t2] = dot * scale;
          max_score = std::max(max_score, row[t2]);
        }
        double sum = 0.0;
        for (int t2 = 0; t2 <= t; ++t2) sum += (row[t2] = std::exp(row[t2] - max_score));
        for (int t2 = 0; t2 < t_size; ++t2) row[t2] = t2 <= t ? row[t2] / sum : 0.0;
        double* o = &(*out)[(b * t_size + t) * c_size + h * hs];
        for (int i = 0; i < hs; ++i) o[i] = 0.0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const double* v = &qkv[(b * t_size + t2) * 3 * c_size + 2 * c_size + h * hs];
          for (int i = 0; i < hs; ++i) o[i] += row[t2] * v[i];
        }
      }
    }
  }
}

void NaiveAttentionBackward(std::vector<double>* dqkv, const std::vector<double>& dout,
                            const std::vector<double>& qkv, const std::vector<double>& att,
                            int b_size, int t_size, int c_size, int heads) {
  const int hs = c_size / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<double> datt(t_size), dpreatt(t_size);
  for (int b = 0; b < b_size; ++b) {
    for (int t = 0; t < t_size; ++t) {
      for (int h = 0; h < heads; ++h) {
        const double* row = &att[((b * heads + h) * t_size + t) * t_size];
        const double* d = &dout[(b * t_size + t) * c_size + h * hs];
        for (int t2 = 0; t2 <= t; ++t2) {
          const int64_t v_offset = (b * t_size + t2) * 3 * c_size + 2 * c_size + h * hs;
          datt[t2] = 0.0;
          for (int i = 0; i < hs; ++i) {
            datt[t2] += qkv[v_offset + i] * d[i];
            (*dqkv)[v_offset + i] += row[t2] * d[i];
          }
        }
        for (int t2 = 0; t2 <= t; ++t2) {
          dpreatt[t2] = 0.0;
          for (int t3 = 0; t3 <= t; ++t3) {
            dpreatt[t2] += row[t3] * ((t2 == t3 ? 1.0 : 0.0) - row[t2]) * datt[t3];
          }
        }
        const int64_t q_offset = (b * t_size + t) * 3 * c_size + h * hs;
        for (int t2 = 0; t2 <= t; ++t2) {
          const int64_t k_offset = (b * t_size + t2) * 3 * c_size + c_size + h * hs;
          for (int i = 0; i < hs; ++i) {
            (*dqkv)[q_offset + i] += qkv[k_offset + i] * dpreatt[t2] * scale;
            (*dqkv)[k_offset + i] += qkv[q_offset + i] * dpreatt[t2] * scale;
          }
        }
      }
    }
  }
}

TEST(AttentionTest, ProbabilitiesAreCausalAndRowsSumToOne) {
  AttentionCase c;
  for (double& x : c.qkv) x *= 4.0;  // sharp softmax
  c.Loss();
  for (int bh = 0; bh < B * NH; ++bh) {
    for (int t = 0; t < T; ++t) {
      const double* row = &c.att[(bh * T + t) * T];
      double sum = 0.0;
      for (int t2 = 0; t2 <= t; ++t2) sum += row[t2];
      EXPECT_NEAR(sum, 1.0, 1e-14) << bh << " " << t;
      for (int t2 = t + 1; t2 < T; ++t2) EXPECT_EQ(row[t2], 0.0) << bh << " " << t << " " << t2;
    }
  }
}

TEST(AttentionTest, BackwardInputMatchesFiniteDifferences) {
  AttentionCase c;
  c.Loss();  // saves att at the unperturbed input
  std::vector<double> dqkv(B * T * 3 * C, 0.0);
  AttentionBackwardInput(dqkv.data(), c.probe.data(), c.qkv.data(), c.att.data(), B, T, C, NH);
  const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.qkv);
  EXPECT_LT(MaxRelativeError(dqkv, expected), kTolerance);
}

// T spans three row blocks of the implementation (64 rows each), the last one partial.
TEST(AttentionTest, MatchesNaiveReferenceAcrossRowBlocks) {
  constexpr int kB = 1, kT = 150, kC = 8, kNH = 2;
  const auto qkv = RandomVector(kB * kT * 3 * kC, 5, -2.0, 2.0);
  const auto dout = RandomVector(kB * kT * kC, 6);
  std::vector<double> out(kB * kT * kC), att(kB * kNH * kT * kT), dqkv(qkv.size(), 0.0);
  AttentionForward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
  AttentionBackwardInput(dqkv.data(), dout.data(), qkv.data(), att.data(), kB, kT, kC, kNH);
  std::vector<double> expected_out(out.size()), expected_att(att.size()),
      expected_dqkv(qkv.size(), 0.0);
  NaiveAttentionForward(&expected_out, &expected_att, qkv, kB, kT, kC, kNH);
  NaiveAttentionBackward(&expected_dqkv, dout, qkv, expected_att, kB, kT, kC, kNH);
  EXPECT_LT(MaxRelativeError(out, expected_out), 1e-12);
  EXPECT_LT(MaxRelativeError(att, expected_att), 1e-12);
  EXPECT_LT(MaxRelativeError(dqkv, expected_dqkv), 1e-12);
  for (int bh = 0; bh < kB * kNH; ++bh) {
    for (int t = 0; t < kT; ++t) {
      for (int t2 = t + 1; t2 < kT; ++t2) ASSERT_EQ(att[(bh * kT + t) * kT + t2], 0.0);
    }
  }
}

TEST(AttentionTest, BackwardAccumulates) {
  AttentionCase c;
  c.Loss();
  std::vector<double> dqkv(B * T * 3 * C, 0.0);
  AttentionBackwardInput(dqkv.data(), c.probe.data(), c.qkv.data(), c.att.data(), B, T, C, NH);
  const auto once = dqkv;
  AttentionBackwardInput(dqkv.data(), c.probe.data(), c.qkv.data(), c.att.data(), B, T, C, NH);
  EXPECT_LT(MaxRelativeError(dqkv, testing::Scaled(once, 2.0)), 1e-14);
}

TEST(AttentionTest, FloatForwardMatchesDouble) {
  AttentionCase c;
  c.Loss();
  const auto qkv = Cast<float>(c.qkv);
  std::vector<float> out(B * T * C), att(B * NH * T * T);
  AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out), c.out), 1e-5);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(att), c.att), 1e-5);
}

// Several (b, h) pairs for the threads to share, and T across two row blocks.
std::vector<std::vector<float>> RunFloatAttention() {
  constexpr int kB = 2, kT = 100, kC = 64, kNH = 4;
  const auto qkv = Cast<float>(RandomVector(kB * kT * 3 * kC, 11));
  const auto dout = Cast<float>(RandomVector(kB * kT * kC, 12));
  std::vector<float> out(kB * kT * kC), att(kB * kNH * kT * kT), dqkv(qkv.size(), 0.f);
  AttentionForward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
  AttentionBackwardInput(dqkv.data(), dout.data(), qkv.data(), att.data(), kB, kT, kC, kNH);
  return {out, att, dqkv};
}

TEST(AttentionTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatAttention();
  EXPECT_EQ(RunFloatAttention(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatAttention(), reference) << threads; });
  }
}

// Grouped-query attention: NH = 4 query heads over NKV = 2 key/value heads, hs = 3, with two
// packed documents per row (starting at 0 and 3 in row 0, at 0 and 2 in row 1).
constexpr AttentionShape kGqa{/*B=*/2, /*T=*/6, /*NH=*/4, /*NKV=*/2, /*hs=*/3};
constexpr int kGqaStride = (4 + 2 * 2) * 3;
const std::vector<int32_t> kDocStart = {0, 0, 0, 3, 3, 3, 0, 0, 2, 2, 2, 2};

struct GqaCase {
  std::vector<double> qkv = RandomVector(2 * 6 * kGqaStride, 21);
  std::vector<double> probe = RandomVector(2 * 6 * 4 * 3, 22);
  std::vector<double> out = std::vector<double>(2 * 6 * 4 * 3);
  std::vector<double> att = std::vector<double>(2 * 4 * 6 * 6);
  const int32_t* doc_start = kDocStart.data();

  double Loss() {
    GroupedAttentionForward(out.data(), att.data(), qkv.data(), kGqa, doc_start);
    return Dot(probe, out);
  }
};

TEST(GroupedAttentionTest, BackwardInputMatchesFiniteDifferences) {
  for (bool packed : {false, true}) {
    GqaCase c;
    if (!packed) c.doc_start = nullptr;
    c.Loss();
    std::vector<double> dqkv(c.qkv.size(), 0.0);
    GroupedAttentionBackwardInput(dqkv.data(), c.probe.data(), c.qkv.data(), c.att.data(), kGqa);
    const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.qkv);
    EXPECT_LT(MaxRelativeError(dqkv, expected), kTolerance) << "packed " << packed;
  }
}

// A query never sees a key of another document, and its probabilities sum to one within it.
TEST(GroupedAttentionTest, PackedDocumentsDoNotAttendAcrossBoundaries) {
  GqaCase c;
  c.Loss();
  for (int b = 0; b < 2; ++b) {
    for (int h = 0; h < 4; ++h) {
      for (int t = 0; t < 6; ++t) {
        const double* row = &c.att[((b * 4 + h) * 6 + t) * 6];
        double sum = 0.0;
        for (int j = 0; j < 6; ++j) {
          const bool visible = j >= kDocStart[b * 6 + t] && j <= t;
          if (!visible) EXPECT_EQ(row[j], 0.0) << b << h << t << j;
          sum += row[j];
        }
        EXPECT_NEAR(sum, 1.0, 1e-12);
      }
    }
  }
}

// The second document of row 0 (positions 3..5), run alone as a batch of its own, gives the
// same outputs: packing changes nothing a document computes.
TEST(GroupedAttentionTest, PackedDocumentEqualsTheDocumentAlone) {
  GqaCase c;
  c.Loss();
  const AttentionShape alone{1, 3, 4, 2, 3};
  std::vector<double> qkv(c.qkv.begin() + 3 * kGqaStride, c.qkv.begin() + 6 * kGqaStride);
  std::vector<double> out(3 * 12), att(4 * 3 * 3);
  GroupedAttentionForward(out.data(), att.data(), qkv.data(), alone, nullptr);
  for (int i = 0; i < 3 * 12; ++i) EXPECT_NEAR(out[i], c.out[3 * 12 + i], 1e-14) << i;
}

// With as many key/value heads as query heads and no documents, the grouped kernel is the
// multi-head one, bit for bit (the GPT-2 path is unchanged).
TEST(GroupedAttentionTest, MultiHeadCaseIsBitwiseAttentionForward) {
  AttentionCase c;
  c.Loss();
  std::vector<double> out(c.out.size()), att(c.att.size());
  GroupedAttentionForward(out.data(), att.data(), c.qkv.data(),
                          AttentionShape{B, T, NH, NH, C / NH}, nullptr);
  EXPECT_EQ(out, c.out);
  EXPECT_EQ(att, c.att);
}

}  // namespace
}  // namespace stagehand::ops
