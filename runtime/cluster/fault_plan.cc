// Parsing STAGEHAND_FAULTS.
#include "runtime/cluster/fault_plan.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime {

absl::StatusOr<FaultPlan> FaultPlanFromSpec(const std::string& spec, int rank, int restart) {
  FaultPlan plan;
  if (spec.empty()) return plan;
  for (const std::string& item :
       std::vector<std::string>(absl::StrSplit(spec, ',', absl::SkipEmpty()))) {
    const std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::vector<std::string> f = kv.size() == 2
                                           ? std::vector<std::string>(absl::StrSplit(kv[1], ':'))
                                           : std::vector<std::string>{};
    int64_t v[3] = {0, 0, 1};
    bool ok = !f.empty();
    for (size_t i = 0; ok && i < f.size() && i < 3; ++i) ok = absl::SimpleAtoi(f[i], &v[i]);
    if (ok && kv[0] == "kill" && (f.size() == 2 || f.size() == 3) && v[1] > 0) {
      if (v[0] == rank && restart < v[2]) plan.kill_at_step = v[1];
    } else if (ok && kv[0] == "withhold" && f.size() == 2 && v[1] > 0) {
      if (v[0] == rank) plan.withhold_receive = static_cast<int>(v[1]);
    } else if (ok && kv[0] == "flip" && f.size() == 2 && v[0] >= 0 && v[1] > 0) {
      plan.flip_stage = static_cast<int>(v[0]);
      plan.flip_at_step = v[1];
    } else if (ok && kv[0] == "slow" && f.size() == 2 && v[0] >= 0 && v[1] > 0) {
      plan.slow_stage = static_cast<int>(v[0]);
      plan.slow_forward_ms = static_cast<double>(v[1]);
    } else if (ok && kv[0] == "nan" && f.size() == 2 && v[0] > 0 && v[1] >= 0) {
      plan.nan_at_step = v[0];
      plan.nan_microbatch = static_cast<int>(v[1]);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(kFaultsVar, ": cannot read '", item,
                       "' (want kill=RANK:STEP[:ATTEMPTS], withhold=RANK:N, flip=STAGE:STEP, "
                       "nan=STEP:MICROBATCH or slow=STAGE:MS)"));
    }
  }
  return plan;
}

}  // namespace stagehand::runtime
