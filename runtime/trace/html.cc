// RenderHtml: the page template, and the trace packed into it as compact JSON rows.
// Not a general viewer: the page knows the lanes and action kinds of Stagehand traces.
#include "runtime/trace/html.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "runtime/trace/summary.h"

namespace stagehand::runtime::trace {
namespace {

using nlohmann::json;

constexpr ActionKind kKinds[] = {
    ActionKind::kForward,      ActionKind::kBackwardInput, ActionKind::kBackwardWeight,
    ActionKind::kBackward,     ActionKind::kSendForward,   ActionKind::kRecvForward,
    ActionKind::kSendBackward, ActionKind::kRecvBackward,  ActionKind::kReduceGrad,
    ActionKind::kOptimizer,
};

int KindIndex(ActionKind kind) {
  for (int i = 0; i < static_cast<int>(std::size(kKinds)); ++i) {
    if (kKinds[i] == kind) return i;
  }
  return 0;
}

double Round3(double v) { return std::round(v * 1e3) / 1e3; }

// What the critical path goes through: (step, stage, kind, chunk, microbatch).
using Key = std::tuple<int64_t, int, int, int, int>;

std::set<Key> CriticalKeys(const CriticalPath& path) {
  std::set<Key> keys;
  for (const CriticalLink& l : path.links) {
    if (!l.transfer) {
      keys.insert({path.step, l.stage, static_cast<int>(l.kind), l.chunk, l.microbatch});
      continue;
    }
    const ActionKind recv =
        l.kind == ActionKind::kSendForward ? ActionKind::kRecvForward : ActionKind::kRecvBackward;
    keys.insert({path.step, l.stage, static_cast<int>(l.kind), l.chunk, l.microbatch});
    keys.insert({path.step, l.to_stage, static_cast<int>(recv), l.chunk, l.microbatch});
  }
  return keys;
}

// The parts of each send and receive in `spans` that no compute span of its stage covers:
// (stage, lane, begin, end), the exposed transfer the summary counts.
std::vector<std::tuple<int, int, double, double>> ExposedParts(
    const std::vector<const Span*>& spans) {
  std::map<int, std::vector<std::pair<double, double>>> compute;  // stage -> merged intervals
  for (const Span* s : spans) {
    if (s->lane == Lane::kCompute) compute[s->stage].push_back({s->begin_us, s->end_us});
  }
  for (auto& [stage, intervals] : compute) {
    std::sort(intervals.begin(), intervals.end());
    std::vector<std::pair<double, double>> merged;
    for (const auto& i : intervals) {
      if (!merged.empty() && i.first <= merged.back().second) {
        merged.back().second = std::max(merged.back().second, i.second);
      } else {
        merged.push_back(i);
      }
    }
    intervals = std::move(merged);
  }
  std::vector<std::tuple<int, int, double, double>> parts;
  for (const Span* s : spans) {
    if (s->lane == Lane::kCompute || s->end_us <= s->begin_us) continue;
    const std::vector<std::pair<double, double>>& busy = compute[s->stage];
    double at = s->begin_us;
    auto it = std::lower_bound(busy.begin(), busy.end(), std::make_pair(at, at));
    if (it != busy.begin() && std::prev(it)->second > at) --it;
    for (; it != busy.end() && it->first < s->end_us && at < s->end_us; ++it) {
      if (it->first > at) parts.push_back({s->stage, static_cast<int>(s->lane), at, it->first});
      at = std::max(at, it->second);
    }
    if (at < s->end_us) parts.push_back({s->stage, static_cast<int>(s->lane), at, s->end_us});
  }
  return parts;
}

constexpr const char* kStyle = R"CSS(
body{margin:0;font:12px/1.35 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;background:#fff}
header{position:sticky;top:0;z-index:2;background:#fafafa;border-bottom:1px solid #ddd}
#top{padding:6px 10px 0}
html,body{overflow-x:hidden}
h1{font-size:15px;margin:0 12px 0 0;display:inline}
#meta{color:#555}
#controls{margin:5px 0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
button{font:inherit;padding:1px 9px}
#legend span.sw{display:inline-block;width:12px;height:10px;margin:0 3px 0 10px;vertical-align:-1px;border:1px solid #0002}
#hint{color:#777}
details{margin:3px 0}
pre{font:11px/1.3 ui-monospace,Menlo,Consolas,monospace;margin:4px 0;max-height:40vh;overflow:auto}
#axis{display:block}
#view{position:relative}
svg{display:block;user-select:none}
.box{stroke:#fff;stroke-width:.5;vector-effect:non-scaling-stroke}
.box.F{fill:#4c78a8}.box.I{fill:#f58518}.box.W{fill:#54a24b}.box.B{fill:#b279a2}
.box.OPTIM{fill:#8c8c8c}.box.REDUCE_GRAD{fill:#bab0ac}
.box.SEND_F,.box.RECV_F{fill:#9ecae9;stroke:#6baed6;stroke-width:1}
.box.SEND_B,.box.RECV_B{fill:#fdc086;stroke:#f5a05a;stroke-width:1}
.box.dispatch{fill:#2ca089;stroke:#1b7a66;stroke-width:1}.box.combine{fill:#e8c547;stroke:#c9a21f;stroke-width:1}
.label.dark{fill:#222}
.exposed{fill:#d62728;pointer-events:none}
svg.dense .box{stroke:none}
svg.critmode .box{opacity:.18}
svg.critmode .box.crit{opacity:1;stroke:#000;stroke-width:1.5}
.stripe{fill:#f4f6f8}
.stepline{stroke:#c00;stroke-width:1;stroke-dasharray:4 3;vector-effect:non-scaling-stroke}
.stage{font-weight:600;fill:#333}
.lanelabel{fill:#999;font-size:8px}
.label{font-size:10px;fill:#fff;text-anchor:middle;pointer-events:none}
.tick{stroke:#ccc}
.ticklabel{fill:#555;font-size:10px}
.steplabel{fill:#c00;font-size:10px}
.flow{stroke:#222;stroke-width:1.3;fill:none;marker-end:url(#arrow)}
#tip{position:absolute;display:none;pointer-events:none;background:#fffffe;border:1px solid #999;
  box-shadow:0 2px 6px #0003;padding:5px 7px;font:11px/1.35 ui-monospace,Menlo,Consolas,monospace;white-space:pre;z-index:3}
)CSS";

constexpr const char* kScript = R"JS(
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const S = D.spans, K = D.kinds, P = D.num_stages;
  // Lanes: compute, send, recv and (MoE sub-steps only) a2a, the dispatch / combine lane.
  const A2A = S.some((sp) => sp[1] == 3);
  const GUTTER = 56, ROW = A2A ? 50 : 34, LANE_Y = [2, 20, 27, 35], LANE_H = [16, 6, 6, 13];
  const SHORT = {attn: 'att', dispatch: 'dis', experts: 'exp', combine: 'com', rest: 'rest'};
  const unit = D.virtual_time ? 'units' : 'ms';
  const svg = document.getElementById('svg'), axis = document.getElementById('axis');
  const plot = document.getElementById('plot'), boxes = document.getElementById('boxes');
  const labels = document.getElementById('labels'), overlay = document.getElementById('overlay');
  const tip = document.getElementById('tip');
  const H = P * ROW + 4;
  svg.setAttribute('height', H);
  const fmt = (us) => (us / 1000).toFixed(us >= 100000 ? 1 : us >= 1000 ? 2 : 3);

  // Rows: stripes and stage names.
  const rows = [];
  for (let s = 0; s < P; ++s) {
    const y = s * ROW;
    if (s % 2 == 1) rows.push(`<rect class="stripe" x="0" y="${y}" width="100%" height="${ROW}"/>`);
    rows.push(`<text class="stage" x="6" y="${y + LANE_Y[0] + 12}">s${s}</text>`);
    rows.push(`<text class="lanelabel" x="24" y="${y + LANE_Y[1] + 6}">send</text>`);
    rows.push(`<text class="lanelabel" x="24" y="${y + LANE_Y[2] + 7}">recv</text>`);
    if (A2A) rows.push(`<text class="lanelabel" x="24" y="${y + LANE_Y[3] + 9}">a2a</text>`);
  }
  document.getElementById('rows').innerHTML = rows.join('');

  // Boxes, drawn once in trace time; zoom only changes the group's transform.
  let t0 = Infinity, t1 = -Infinity;
  const parts = [], byStage = [], byStageA2A = [];
  for (let s = 0; s < P; ++s) { byStage.push([]); byStageA2A.push([]); }
  const partner = new Map();
  for (let i = 0; i < S.length; ++i) {
    const [stage, lane, kind, chunk, mb, begin, dur, peer, bytes, step, wait, crit, layer, part] = S[i];
    t0 = Math.min(t0, begin); t1 = Math.max(t1, begin + dur);
    const y = stage * ROW + LANE_Y[lane];
    const cls = lane == 3 ? part : K[kind];
    parts.push(`<rect class="box ${cls}${crit ? ' crit' : ''}" data-i="${i}" x="${begin}" y="${y}" width="${dur}" height="${LANE_H[lane]}"/>`);
    if (lane == 0) byStage[stage].push(i);
    if (lane == 3) byStageA2A[stage].push(i);
    if (lane == 1 || lane == 2) {
      const from = lane == 1 ? stage : peer, to = lane == 1 ? peer : stage;
      const key = `${step}|${K[kind].slice(-1)}|${from}|${to}|${chunk}|${mb}`;
      if (partner.has(key)) { const j = partner.get(key); partner.set(i, j); partner.set(j, i); }
      else partner.set(key, i);
    }
  }
  // Exposed transfer: the part of a send or receive not under its stage's compute.
  for (const [stage, lane, begin, dur] of D.exposed) {
    parts.push(`<rect class="exposed" x="${begin}" y="${stage * ROW + LANE_Y[lane]}" width="${dur}" height="${LANE_H[lane]}"/>`);
  }
  for (const st of D.steps) {
    parts.push(`<line class="stepline" x1="${st[1]}" x2="${st[1]}" y1="0" y2="${H}"/>`);
  }
  boxes.innerHTML = parts.join('');
  if (!(t1 > t0)) { t0 = 0; t1 = 1; }
  // Below a few pixels a box's outline would hide its colour: drop outlines then.
  const durations = [];
  for (let s = 0; s < P; ++s) for (const i of byStage[s]) durations.push(S[i][6]);
  durations.sort((a, b) => a - b);
  const typical = durations.length ? durations[durations.length >> 1] : 1;

  let width = 0, v0 = t0, k = 1;
  const plotWidth = () => width - GUTTER - 8;
  function fit() { v0 = t0; k = plotWidth() / (t1 - t0); apply(); }
  function resize() {
    width = document.getElementById('view').clientWidth;
    svg.setAttribute('width', width); axis.setAttribute('width', width);
    document.getElementById('cliprect').setAttribute('width', Math.max(0, plotWidth() + 8));
    document.getElementById('cliprect').setAttribute('height', H);
  }
  function apply() {
    const minK = plotWidth() / (t1 - t0) / 4, maxK = plotWidth() / 0.5;
    k = Math.min(maxK, Math.max(minK, k));
    plot.setAttribute('transform', `translate(${GUTTER - v0 * k},0) scale(${k},1)`);
    svg.classList.toggle('dense', typical * k < 4);
    overlay.innerHTML = '';
    drawAxis();
    scheduleLabels();
  }
  function drawAxis() {
    const span = plotWidth() / k;
    let step = Math.pow(10, Math.floor(Math.log10(span / 8)));
    for (const m of [1, 2, 5, 10]) { if (span / (step * m) <= 12) { step *= m; break; } }
    const out = [], digits = Math.min(6, Math.max(0, -Math.floor(Math.log10(step / 1000) + 1e-9)));
    for (let t = Math.ceil((v0 - t0) / step) * step + t0; t <= v0 + span; t += step) {
      const x = GUTTER + (t - v0) * k;
      if (x > width - 50) break;
      out.push(`<line class="tick" x1="${x}" x2="${x}" y1="14" y2="24"/>`);
      out.push(`<text class="ticklabel" x="${x + 2}" y="12">${((t - t0) / 1000).toFixed(digits)} ${unit}</text>`);
    }
    for (const st of D.steps) {
      const x = GUTTER + (st[1] - v0) * k;
      if (x >= GUTTER && x <= width) out.push(`<text class="steplabel" x="${x + 2}" y="24">step ${st[0]}</text>`);
    }
    axis.innerHTML = out.join('');
  }
  let pending = false;
  function scheduleLabels() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawLabels(); });
  }
  function drawLabels() {
    const out = [], v1 = v0 + plotWidth() / k;
    for (let s = 0; s < 2 * P && out.length < 6000; ++s) {
      const a2a = s >= P, list = a2a ? byStageA2A[s - P] : byStage[s];
      let lo = 0, hi = list.length;
      while (lo < hi) { const m = (lo + hi) >> 1; const sp = S[list[m]]; if (sp[5] + sp[6] < v0) lo = m + 1; else hi = m; }
      for (let j = lo; j < list.length && out.length < 6000; ++j) {
        const sp = S[list[j]];
        if (sp[5] > v1) break;
        const px = sp[6] * k;
        if (px < 11) continue;  // F3 c1 = F of microbatch 3 on chunk 1; narrower: 3c1, then 3
        const kind = K[sp[2]], perStage = kind == 'OPTIM' || kind == 'REDUCE_GRAD';
        if (perStage && px < 30) continue;
        // A sub-step: F3 exp = the experts of F's microbatch 3.
        const text = perStage ? 'opt' : sp[13] && px >= 44 ? `${kind}${sp[4]} ${SHORT[sp[13]]}` :
                     px >= 44 ? `${kind}${sp[4]} c${sp[3]}` :
                     sp[13] && px >= 24 ? `${kind}${sp[4]}` :
                     px >= 24 ? `${sp[4]}c${sp[3]}` : String(sp[4]);
        const x = GUTTER + (sp[5] + sp[6] / 2 - v0) * k;
        if (x < GUTTER || x > width) continue;
        const y = a2a ? (s - P) * ROW + LANE_Y[3] + 10 : s * ROW + LANE_Y[0] + 12;
        out.push(`<text class="label${a2a ? ' dark' : ''}" x="${x}" y="${y}">${text}</text>`);
      }
    }
    labels.innerHTML = out.join('');
  }

  // Zoom and pan: buttons, ctrl/pinch + wheel, shift + wheel, drag, keys.
  function zoomAt(x, factor) {
    const t = v0 + (x - GUTTER) / k;
    k *= factor;
    const minK = plotWidth() / (t1 - t0) / 4, maxK = plotWidth() / 0.5;
    k = Math.min(maxK, Math.max(minK, k));
    v0 = t - (x - GUTTER) / k;
    apply();
  }
  function pan(px) { v0 += px / k; apply(); }
  document.getElementById('zin').onclick = () => zoomAt(GUTTER + plotWidth() / 2, 2);
  document.getElementById('zout').onclick = () => zoomAt(GUTTER + plotWidth() / 2, 0.5);
  document.getElementById('fit').onclick = fit;
  document.getElementById('crit').onchange = (e) => svg.classList.toggle('critmode', e.target.checked);
  const view = document.getElementById('view');
  view.addEventListener('wheel', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) {
      e.preventDefault();
      zoomAt(e.clientX - view.getBoundingClientRect().left, Math.exp(-e.deltaY * 0.002));
    } else if (e.shiftKey) {
      e.preventDefault();
      pan(e.deltaY || e.deltaX);
    }
  }, {passive: false});
  let drag = null;
  svg.addEventListener('mousedown', (e) => { drag = {x: e.clientX, v0: v0}; });
  window.addEventListener('mouseup', () => { drag = null; });
  window.addEventListener('mousemove', (e) => {
    if (drag) { v0 = drag.v0 - (e.clientX - drag.x) / k; apply(); }
  });
  svg.addEventListener('dblclick', (e) => zoomAt(e.clientX - view.getBoundingClientRect().left, 2));
  window.addEventListener('keydown', (e) => {
    const mid = GUTTER + plotWidth() / 2;
    if (e.key == 'w' || e.key == '+' || e.key == '=') zoomAt(mid, 1.5);
    else if (e.key == 's' || e.key == '-') zoomAt(mid, 1 / 1.5);
    else if (e.key == 'a') pan(-plotWidth() / 5);
    else if (e.key == 'd') pan(plotWidth() / 5);
    else if (e.key == '0' || e.key == 'f') fit();
  });
  window.addEventListener('resize', () => { resize(); apply(); });

  // Hover: details, and for a transfer an arrow from its send to its receive.
  const X = (t) => GUTTER + (t - v0) * k;
  svg.addEventListener('mousemove', (e) => {
    const box = e.target.closest && e.target.closest('rect.box');
    if (!box || drag) { tip.style.display = 'none'; overlay.innerHTML = ''; return; }
    const i = +box.dataset.i;
    const [stage, lane, kind, chunk, mb, begin, dur, peer, bytes, step, wait, crit, layer, part] = S[i];
    let text = `s${stage} ${K[kind]} c${chunk} mb${mb}${part ? ` L${layer} ${part}` : ''}   step ${step}\n` +
               `begin ${fmt(begin - t0)} ${unit}, duration ${fmt(dur)} ${unit}`;
    if ((lane == 0 || lane == 3) && wait >= 0) text += `\nwaited ${fmt(wait)} ${unit} between ready and start`;
    if (lane == 3) text += '\nMoE all-to-all (communication lane)';
    if (lane == 1 || lane == 2) {
      text += `\n${lane == 1 ? 'to' : 'from'} s${peer}, ${bytes} bytes (${K[kind].endsWith('F') ? 'activation' : 'gradient'})`;
      const j = partner.get(i);
      if (j !== undefined) {
        const [a, b] = lane == 1 ? [S[i], S[j]] : [S[j], S[i]];
        const x1 = X(a[5]), y1 = a[0] * ROW + LANE_Y[1] + 3, x2 = X(b[5] + b[6]), y2 = b[0] * ROW + LANE_Y[2] + 3;
        overlay.innerHTML = `<path class="flow" d="M${x1},${y1} L${x2},${y2}"/>`;
      }
    } else {
      overlay.innerHTML = '';
    }
    tip.textContent = text;
    tip.style.display = 'block';
    tip.style.left = (e.pageX + 14) + 'px';
    tip.style.top = (e.pageY + 14) + 'px';
  });
  svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; overlay.innerHTML = ''; });

  resize();
  fit();
  // #from=A&to=B (in the axis' ms or units) opens on that window.
  const hash = new URLSearchParams(location.hash.slice(1));
  // #critical opens with the critical path marked.
  if (hash.has('critical')) {
    document.getElementById('crit').checked = true;
    svg.classList.add('critmode');
  }
  if (hash.has('from') && hash.has('to') && +hash.get('to') > +hash.get('from')) {
    v0 = t0 + 1000 * hash.get('from');
    k = plotWidth() / (1000 * (hash.get('to') - hash.get('from')));
    apply();
  }
  drawLabels();
  const n = boxes.querySelectorAll('rect.box').length;
  document.body.dataset.boxes = n;
  document.getElementById('status').textContent = `${n} boxes`;
})();
)JS";

}  // namespace

std::string RenderHtml(const Trace& trace, const HtmlOptions& options) {
  std::vector<const Span*> spans;
  for (const Span& s : trace.spans) {
    if (options.step < 0 || s.step == options.step) spans.push_back(&s);
  }
  std::stable_sort(spans.begin(), spans.end(), [](const Span* a, const Span* b) {
    return std::tie(a->stage, a->lane, a->begin_us) < std::tie(b->stage, b->lane, b->begin_us);
  });
  SummaryOptions summary_options;
  summary_options.critical_path_step = options.step;
  absl::StatusOr<TraceSummary> summary = Summarize(trace, summary_options);
  std::set<Key> critical;
  std::string summary_text = "no summary: ";
  if (summary.ok()) {
    critical = CriticalKeys(summary->critical_path);
    summary_text = FormatSummary(*summary);
  } else {
    absl::StrAppend(&summary_text, summary.status().message());
  }

  json rows = json::array();
  for (const Span* s : spans) {
    const bool crit =
        critical.count({s->step, s->stage, static_cast<int>(s->kind), s->chunk, s->microbatch}) > 0;
    rows.push_back({s->stage, static_cast<int>(s->lane), KindIndex(s->kind), s->chunk,
                    s->microbatch, Round3(s->begin_us), Round3(s->duration_us()), s->peer, s->bytes,
                    s->step, Round3(s->wait_us), crit ? 1 : 0, s->layer,
                    s->sub_step() ? std::string(SubStepKindName(s->part)) : ""});
  }
  json steps = json::array();
  json exposed = json::array();
  for (const auto& [stage, lane, begin, end] : ExposedParts(spans)) {
    exposed.push_back({stage, lane, Round3(begin), Round3(end - begin)});
  }
  for (const StepSpan& st : trace.steps) {
    if (options.step < 0 || st.step == options.step) {
      steps.push_back({st.step, Round3(st.begin_us), Round3(st.end_us)});
    }
  }
  json kinds = json::array();
  for (ActionKind k : kKinds) kinds.push_back(std::string(ActionKindName(k)));
  json data = {{"num_stages", trace.num_stages},
               {"virtual_time", trace.virtual_time},
               {"kinds", kinds},
               {"spans", rows},
               {"steps", steps},
               {"exposed", exposed}};
  // Inside <script>, "</" must not appear.
  const std::string data_text = absl::StrReplaceAll(data.dump(), {{"</", "<\\/"}});
  auto escape = [](const std::string& text) {
    return absl::StrReplaceAll(text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}});
  };
  const std::string meta = absl::StrCat(
      trace.num_stages, " stages, ", trace.num_chunks, " chunks, ", trace.num_microbatches,
      " microbatches, ", spans.size(), " spans", trace.virtual_time ? ", virtual time" : "",
      options.step >= 0 ? absl::StrCat(", step ", options.step) : "", " — ", trace.process);

  std::string page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  absl::StrAppend(&page, "<title>", escape(options.title), "</title>\n<style>", kStyle,
                  "</style>\n</head><body>\n");
  absl::StrAppend(&page, "<header><div id=\"top\"><h1>", escape(options.title),
                  "</h1><span id=\"meta\">", escape(meta), "</span>\n");
  absl::StrAppend(
      &page,
      R"HTML(<div id="controls"><button id="zin" title="zoom in (w)">+</button><button id="zout" title="zoom out (s)">&minus;</button><button id="fit" title="fit (0)">fit</button>
<label><input type="checkbox" id="crit"> critical path</label><span id="status"></span>
<span id="legend"><span class="sw" style="background:#4c78a8"></span>F forward<span class="sw" style="background:#f58518"></span>I input grad<span class="sw" style="background:#54a24b"></span>W weight grad<span class="sw" style="background:#b279a2"></span>B fused backward<span class="sw" style="background:#8c8c8c"></span>optimizer<span class="sw" style="background:#9ecae9"></span>activation transfer<span class="sw" style="background:#fdc086"></span>gradient transfer<span class="sw" style="background:#2ca089"></span>MoE dispatch<span class="sw" style="background:#e8c547"></span>MoE combine<span class="sw" style="background:#d62728"></span>exposed transfer / a2a (not under compute)</span>
<span id="hint">F3 c1 = microbatch 3, chunk 1 · ctrl+wheel or w/s: zoom · drag, shift+wheel or a/d: pan · hover: details · URL #from=A&amp;to=B opens a window, #critical the critical path</span></div>
)HTML");
  absl::StrAppend(&page, "<details><summary>summary</summary><pre id=\"summary\">",
                  escape(summary_text),
                  "</pre></details></div>\n<svg id=\"axis\" height=\"26\" "
                  "xmlns=\"http://www.w3.org/2000/svg\"></svg></header>\n");
  absl::StrAppend(&page, R"HTML(<div id="view"><svg id="svg" xmlns="http://www.w3.org/2000/svg">
<defs><clipPath id="clip"><rect id="cliprect" x="56" y="0" width="0" height="0"/></clipPath>
<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#222"/></marker></defs>
<g id="rows"></g><g clip-path="url(#clip)"><g id="plot"><g id="boxes"></g></g><g id="labels"></g></g><g id="overlay"></g></svg></div>
<div id="tip"></div>
)HTML");
  absl::StrAppend(&page, "<script id=\"data\" type=\"application/json\">", data_text,
                  "</script>\n");
  absl::StrAppend(&page, "<script>", kScript, "</script>\n</body></html>\n");
  return page;
}

}  // namespace stagehand::runtime::trace
