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
  // What FormatScheduleCsv writes must parse back to the same CSV.
  const std::string csv = FormatScheduleCsv(*table);
  absl::StatusOr<ScheduleTable> again = ParseScheduleCsv(csv, "round trip");
  if (!again.ok() || FormatScheduleCsv(*again) != csv) std::abort();
  (void)FormatGrid(*table);
  absl::StatusOr<StepSpec> spec = SpecFromTable(*table);
  if (!spec.ok()) return 0;
  (void)OrdersFromTable(*table, *spec);
  return 0;
}
