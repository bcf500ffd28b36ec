// tools/trace: reads Chrome-JSON traces that `launch --trace=PATH` writes and prints their
// summary, renders them as a self-contained HTML timeline, or merges several processes'
// traces onto one clock. Not a trace recorder: runtime/trace/recorder.h records.
//
//   trace summary PATH... [--step=N] [--warmup=K] several paths are merged first
//   trace compare A.json B.json [--warmup=K]     two runs side by side, noise or not
//   trace render PATH... -o OUT.html [--step=N] [--title=TEXT]
//   trace merge PATH... -o OUT.json
//
// Under `bazel run`, relative paths are taken from the directory bazel was run in.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/io/user_path.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/html.h"
#include "runtime/trace/summary.h"

namespace stagehand::runtime::trace {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  trace summary PATH... [--step=N] [--warmup=K]\n"
    "  trace compare A.json B.json [--warmup=K]\n"
    "  trace render PATH... -o OUT.html [--step=N] [--title=TEXT]\n"
    "  trace merge PATH... -o OUT.json\n"
    "PATH is a Chrome trace JSON written by `launch --trace=PATH`; several are merged onto one "
    "clock.\n";

struct Command {
  std::string verb;
  std::vector<std::string> inputs;
  std::string output;
  int64_t step = -1;
  int warmup = 1;  // steps left out of the median and spread
  std::string title = "Stagehand timeline";
};

std::string Resolve(const std::string& path) { return stagehand::runtime::ResolveUserPath(path); }

absl::StatusOr<Command> Parse(int argc, char** argv) {
  if (argc < 2) return absl::InvalidArgumentError("no command given");
  Command c;
  c.verb = argv[1];
  if (c.verb != "summary" && c.verb != "render" && c.verb != "merge" && c.verb != "compare") {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", c.verb, "'"));
  }
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-o" || arg == "--output") {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(arg, " needs a path"));
      c.output = Resolve(argv[++i]);
    } else if (absl::StartsWith(arg, "--output=")) {
      c.output = Resolve(arg.substr(9));
    } else if (absl::StartsWith(arg, "--step=")) {
      if (!absl::SimpleAtoi(arg.substr(7), &c.step) || c.step < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad ", arg, ": want a step number >= 0"));
      }
    } else if (absl::StartsWith(arg, "--warmup=")) {
      if (!absl::SimpleAtoi(arg.substr(9), &c.warmup) || c.warmup < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad ", arg, ": want a step count >= 0"));
      }
    } else if (absl::StartsWith(arg, "--title=")) {
      c.title = arg.substr(8);
    } else if (absl::StartsWith(arg, "-") && arg.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "'"));
    } else {
      c.inputs.push_back(Resolve(arg));
    }
  }
  if (c.inputs.empty()) return absl::InvalidArgumentError("no trace file given");
  if (c.verb == "compare" && c.inputs.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("compare takes two traces, got ", c.inputs.size()));
  }
  if (c.verb != "summary" && c.verb != "compare" && c.output.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(c.verb, " needs -o OUT"));
  }
  return c;
}

absl::StatusOr<Trace> Load(const std::vector<std::string>& paths) {
  std::vector<Trace> traces;
  for (const std::string& path : paths) {
    absl::StatusOr<Trace> t = ReadChromeJsonFile(path);
    if (!t.ok()) return t.status();
    traces.push_back(std::move(*t));
  }
  if (traces.size() == 1) return std::move(traces.front());
  return MergeTraces(traces);
}

absl::Status Compare(const Command& c) {
  std::vector<TraceSummary> summaries;
  for (const std::string& path : c.inputs) {
    absl::StatusOr<Trace> trace = ReadChromeJsonFile(path);
    if (!trace.ok()) return trace.status();
    SummaryOptions options;
    options.warmup_steps = c.warmup;
    absl::StatusOr<TraceSummary> summary = Summarize(*trace, options);
    if (!summary.ok())
      return absl::Status(summary.status().code(),
                          absl::StrCat(path, ": ", summary.status().message()));
    summaries.push_back(*std::move(summary));
  }
  const auto base = [](const std::string& path) { return path.substr(path.find_last_of('/') + 1); };
  std::fputs(
      FormatComparison(summaries[0], base(c.inputs[0]), summaries[1], base(c.inputs[1])).c_str(),
      stdout);
  return absl::OkStatus();
}

absl::Status Run(const Command& c) {
  if (c.verb == "compare") return Compare(c);
  absl::StatusOr<Trace> trace = Load(c.inputs);
  if (!trace.ok()) return trace.status();
  if (c.verb == "merge") {
    if (absl::Status s = WriteChromeJsonFile(*trace, c.output); !s.ok()) return s;
    std::printf("merged %zu traces into %s\n", c.inputs.size(), c.output.c_str());
    return absl::OkStatus();
  }
  if (c.verb == "summary") {
    SummaryOptions options;
    options.critical_path_step = c.step;
    options.warmup_steps = c.warmup;
    absl::StatusOr<TraceSummary> summary = Summarize(*trace, options);
    if (!summary.ok()) return summary.status();
    std::fputs(FormatSummary(*summary).c_str(), stdout);
    std::fputs(FormatPhaseTimes(PhaseTimesOf(*trace)).c_str(), stdout);
    return absl::OkStatus();
  }
  HtmlOptions options;
  options.step = c.step;
  options.title = c.title;
  std::ofstream out(c.output, std::ios::binary | std::ios::trunc);
  if (!out) return absl::NotFoundError(absl::StrCat("cannot open ", c.output, " for writing"));
  out << RenderHtml(*trace, options);
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", c.output, " failed"));
  std::printf("wrote %s\n", c.output.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace stagehand::runtime::trace

int main(int argc, char** argv) {
  namespace t = stagehand::runtime::trace;
  absl::StatusOr<t::Command> command = t::Parse(argc, argv);
  if (!command.ok()) {
    std::fprintf(stderr, "trace: error: %s\n%s", std::string(command.status().message()).c_str(),
                 t::kUsage);
    return 2;
  }
  if (absl::Status s = t::Run(*command); !s.ok()) {
    std::fprintf(stderr, "trace: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
