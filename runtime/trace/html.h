// RenderHtml: a Trace as one self-contained HTML page (inline SVG, script and data; no
// network) that draws stages as rows, F/I/W/B/OPTIM boxes in distinct colours with their
// microbatch numbers, the send and receive lanes beneath each stage, step boundaries, the
// critical path on demand, zoom (wheel, buttons, drag to pan) and hover details.
// Not a trace viewer for arbitrary traces: Perfetto is, for the Chrome JSON.
#ifndef STAGEHAND_RUNTIME_TRACE_HTML_H_
#define STAGEHAND_RUNTIME_TRACE_HTML_H_

#include <cstdint>
#include <string>

#include "runtime/trace/trace.h"

namespace stagehand::runtime::trace {

struct HtmlOptions {
  std::string title = "Stagehand timeline";
  int64_t step = -1;  // draw only this step; -1 = every step
};

// The page's script draws one <rect class="box ..."> per span of the drawn steps and then
// sets <body data-boxes="N">, so tests can count what it drew.
std::string RenderHtml(const Trace& trace, const HtmlOptions& options = {});

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_HTML_H_
