// Tests for MoE experts: each expert is its own MLP over its rows (an expert without rows is
// skipped), with input- and weight-gradients against float64 finite differences for GELU and
// SwiGLU experts, and W accumulating.
#include "ops/cpu/moe_experts.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

constexpr int E = 3, C = 4, F = 5;
const std::vector<int64_t> kOffsets = {0, 3, 3, 7};  // expert 1 gets no rows
constexpr int R = 7;

struct Weights {
  std::vector<std::vector<double>> fc_w, fc_b, proj_w, proj_b;  // per expert
};

Weights RandomWeights(const MoeExpertShape& s, uint64_t seed) {
  Weights w;
  for (int e = 0; e < E; ++e) {
    w.fc_w.push_back(RandomVector(s.FC() * C, seed + 10 * e + 1));
    w.fc_b.push_back(RandomVector(s.FC(), seed + 10 * e + 2));
    w.proj_w.push_back(RandomVector(C * F, seed + 10 * e + 3));
    w.proj_b.push_back(RandomVector(C, seed + 10 * e + 4));
  }
  return w;
}

std::vector<MoeExpertTensors<const double>> Values(const Weights& w) {
  std::vector<MoeExpertTensors<const double>> t(E);
  for (int e = 0; e < E; ++e) {
    t[e] = {w.fc_w[e].data(), w.fc_b[e].data(), w.proj_w[e].data(), w.proj_b[e].data()};
  }
  return t;
}

void CheckGradients(bool swiglu) {
  const MoeExpertShape s{C, F, swiglu};
  Weights w = RandomWeights(s, swiglu ? 100 : 200);
  auto in = RandomVector(R * C, 15);
  const auto probe = RandomVector(R * C, 16);
  std::vector<double> out(R * C), fch(R * s.FC()), act(R * F);
  const auto loss = [&] {
    MoeExpertsForward(out.data(), fch.data(), act.data(), in.data(), Values(w), kOffsets.data(), s);
    return Dot(probe, out);
  };
  loss();
  std::vector<double> d_in(R * C, 0.0), d_fch(R * s.FC()), d_act(R * F);
  MoeExpertsBackwardInput(d_in.data(), d_fch.data(), d_act.data(), probe.data(), fch.data(),
                          Values(w), kOffsets.data(), s);
  EXPECT_LT(MaxRelativeError(d_in, FiniteDifferenceGradient(loss, &in)), 1e-8);
  loss();  // the differences left the activations at a perturbed point
  Weights g = RandomWeights(s, 0);
  for (auto* list : {&g.fc_w, &g.fc_b, &g.proj_w, &g.proj_b}) {
    for (auto& v : *list) v.assign(v.size(), 0.0);
  }
  std::vector<MoeExpertTensors<double>> grads(E);
  for (int e = 0; e < E; ++e) {
    grads[e] = {g.fc_w[e].data(), g.fc_b[e].data(), g.proj_w[e].data(), g.proj_b[e].data()};
  }
  MoeExpertsBackwardWeights(grads, probe.data(), act.data(), d_fch.data(), in.data(),
                            kOffsets.data(), s);
  for (int e = 0; e < E; ++e) {
    const auto fc_w = FiniteDifferenceGradient(loss, &w.fc_w[e]);
    const auto proj_b = FiniteDifferenceGradient(loss, &w.proj_b[e]);
    if (e == 1) {  // no rows: no gradient
      EXPECT_EQ(g.fc_w[e], std::vector<double>(g.fc_w[e].size(), 0.0));
      EXPECT_EQ(fc_w, std::vector<double>(fc_w.size(), 0.0));
      continue;
    }
    EXPECT_LT(MaxRelativeError(g.fc_w[e], fc_w), 1e-8) << e;
    EXPECT_LT(MaxRelativeError(g.fc_b[e], FiniteDifferenceGradient(loss, &w.fc_b[e])), 1e-8) << e;
    EXPECT_LT(MaxRelativeError(g.proj_w[e], FiniteDifferenceGradient(loss, &w.proj_w[e])), 1e-8)
        << e;
    EXPECT_LT(MaxRelativeError(g.proj_b[e], proj_b), 1e-8) << e;
  }
  // W accumulates.
  loss();
  const std::vector<double> once = g.proj_w[2];
  MoeExpertsBackwardWeights(grads, probe.data(), act.data(), d_fch.data(), in.data(),
                            kOffsets.data(), s);
  for (size_t i = 0; i < once.size(); ++i) EXPECT_DOUBLE_EQ(g.proj_w[2][i], 2 * once[i]);
}

TEST(MoeExpertsTest, GeluExpertGradientsMatchFiniteDifferences) { CheckGradients(false); }

TEST(MoeExpertsTest, SwiGluExpertGradientsMatchFiniteDifferences) { CheckGradients(true); }

}  // namespace
}  // namespace stagehand::ops
