// libFuzzer target: schedule CSV text through ParseScheduleCsv, then everything a loaded
// schedule goes through (CSV round trip, grid, spec, orders). Not a validator test.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/schedule_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stagehand::runtime;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ScheduleTable> table = ParseScheduleCsv(text, "fuzz");
  if (!table.ok()) return 0;
  (void)FormatGrid(*table);
  absl::StatusOr<StepSpec> spec = SpecFromTable(*table);
  if (!spec.ok()) return 0;
  (void)OrdersFromTable(*table, *spec);
  // A usable schedule's CSV (what SaveScheduleCsv writes) must load back to the same CSV.
  // (All-idle tables are not usable: one idle cell formats to "", which is no schedule.)
  const std::string csv = FormatScheduleCsv(*table);
  absl::StatusOr<ScheduleTable> again = ParseScheduleCsv(csv, "round trip");
  if (!again.ok() || FormatScheduleCsv(*again) != csv) std::abort();
  return 0;
}
