// Chrome trace event JSON (what chrome://tracing and Perfetto load) for a Trace: write,
// read back, and merge the traces of several processes onto one clock.
// Not a general Chrome-trace reader: it reads the traces this file writes, nothing else.
//
// Layout: one process per stage (pid = stage, "stage 3"), one thread per lane ("compute",
// "send", "recv"; overlapping transfers spill onto "send 2", ...), complete events ("X")
// whose args carry the action, a flow arrow from each send to its receive (flow events
// v2: "bind_id" with "flow_out" on the send, "flow_in" on the receive),
// activation memory as counter tracks ("C"), and the steps on a "steps" process. The
// trace's clock (epoch, offset, shape) travels in the top-level "otherData".
#ifndef STAGEHAND_RUNTIME_TRACE_CHROME_JSON_H_
#define STAGEHAND_RUNTIME_TRACE_CHROME_JSON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::trace {

// The pid of the "steps" process.
inline constexpr int kStepsPid = 1000000;

// The largest step shape FromChromeJson accepts (what a file may make the tools allocate).
inline constexpr int64_t kMaxStages = 1 << 14;
inline constexpr int64_t kMaxChunks = 1 << 16;
inline constexpr int64_t kMaxMicrobatches = 1 << 20;

std::string ToChromeJson(const Trace& trace);

// InvalidArgument naming what is wrong: not JSON (with the byte where parsing stopped, as a
// truncated file shows), not a Stagehand trace, or event i lacks a field or has a bad value.
absl::StatusOr<Trace> FromChromeJson(absl::string_view json);

// File wrappers: NotFound / PermissionDenied-style errors name the path.
absl::Status WriteChromeJsonFile(const Trace& trace, const std::string& path);
absl::StatusOr<Trace> ReadChromeJsonFile(const std::string& path);

// One trace from several processes' traces: every time is moved onto the clock of the
// earliest (epoch_unix_us + clock_offset_us), receives recorded without their send get the
// send's begin, steps are joined (earliest begin, latest end) and waits recomputed.
// InvalidArgument if the traces disagree on the step's shape (P, C, M) or two of them hold
// events of the same stage.
absl::StatusOr<Trace> MergeTraces(const std::vector<Trace>& traces);

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_CHROME_JSON_H_
