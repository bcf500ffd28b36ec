// Benchmark of the all-to-all overlap under expert parallelism across processes: in one go,
// `launch --nprocs=4 --dp=2 --ep=2 --stages=2` (4 worker processes; each stage's two replicas
// one expert-parallel group, its dispatch / combine Gloo all-to-alls) trains an all-MoE model
// under 1F1B (MoE actions as sub-steps one action at a time: --moe_sub_steps, so that the
// all-to-alls show on the trace's a2a lane) and under 1f1b_overlap (pairs overlapped), with a
// link latency injected into every collective call (--link_latency_us): about one F experts
// sub-step's compute, measured first by a traced probe run in the same go. Each run is traced;
// its trace summary (warm-up step left out) gives the all-to-all time per step and the share
// of it under the same stage's compute, and the median step time. Then the step-time ratio.
// Not a test: it times a loaded host honestly and prints what it saw.
//   ep_overlap_benchmark [--microbatches=M] [--steps=N] [--repeats=R] [--latency_us=L]
//                        [--keep=DIR]
// --repeats runs the pair R times alternating (medians over them); --latency_us skips the
// probe; --keep writes the traces and logs to DIR.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/summary.h"
#include "runtime/trace/trace.h"
#include "runtime/util/cores.h"
#include "runtime/util/status_macros.h"

namespace stagehand::tools {
namespace {

constexpr int kB = 2, kT = 128;  // microbatch: sequences, tokens each

// Four MoE layers of 8 experts, top-2, and a shared expert (actors:moe_overlap_benchmark's).
constexpr const char* kModel = R"({"vocab_size": 256, "max_seq_len": 128, "d_model": 64,
  "num_heads": 4, "moe": {"num_experts": 8, "top_k": 2, "ffn_hidden": 256,
  "shared_expert_ffn": 256, "capacity_factor": 1.25, "aux_loss_coeff": 0.01},
  "layers": [{"attention": "causal", "mlp": "moe"}, {"attention": "causal", "mlp": "moe"},
             {"attention": "causal", "mlp": "moe"}, {"attention": "causal", "mlp": "moe"}]})";

struct Flags {
  int microbatches = 8;
  int steps = 6;
  int repeats = 1;
  double latency_us = -1;  // < 0: probe
  std::string keep;
};

bool ParseFlag(const std::string& arg, Flags* f) {
  const auto value = [&](const char* name) -> const char* {
    return absl::StartsWith(arg, name) ? arg.c_str() + std::string(name).size() : nullptr;
  };
  if (const char* v = value("--microbatches=")) return absl::SimpleAtoi(v, &f->microbatches);
  if (const char* v = value("--steps=")) return absl::SimpleAtoi(v, &f->steps) && f->steps >= 1;
  if (const char* v = value("--repeats=")) {
    return absl::SimpleAtoi(v, &f->repeats) && f->repeats >= 1;
  }
  if (const char* v = value("--latency_us=")) {
    return absl::SimpleAtod(v, &f->latency_us) && f->latency_us >= 0;
  }
  if (const char* v = value("--keep=")) {
    f->keep = v;
    return !f->keep.empty();
  }
  return false;
}

// tools/launch next to this binary in its runfiles (bazel run / bazel-bin).
std::string LaunchBinary(const char* argv0) {
  if (const char* dir = std::getenv("RUNFILES_DIR")) {
    return std::string(dir) + "/stagehand/tools/launch";
  }
  return std::string(argv0) + ".runfiles/stagehand/tools/launch";
}

// Runs `argv` with stdout and stderr into `log`; its exit status (-1: could not start).
int RunTo(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::FILE* out = std::fopen(log.c_str(), "w");
    if (out == nullptr) _exit(126);
    dup2(fileno(out), 1);
    dup2(fileno(out), 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Context {
  std::string launch, dir, model;
  Flags flags;
};

// Rank 0's last "step N loss X grad_norm G bits B" line of a run's log ("" if none): the two
// planners' must agree bit for bit.
std::string LastLoss(const std::string& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "[rank 0] step ") && absl::StrContains(line, " loss ") &&
        absl::StrContains(line, " bits ") && !absl::StrContains(line, "held-out")) {
      last = line.substr(9);
    }
  }
  return last;
}

// One traced 4-process run: the trace summary's all-to-all figures, the warm-up step out.
absl::StatusOr<runtime::trace::AllToAllOverlap> RunCluster(const Context& c,
                                                           const std::string& planner,
                                                           bool sub_steps, double latency_us,
                                                           int steps, const std::string& name) {
  const std::string trace = absl::StrCat(c.dir, "/", name, ".json");
  const std::string log = absl::StrCat(c.dir, "/", name, ".log");
  std::vector<std::string> argv = {c.launch,
                                   "--nprocs=4",
                                   "--stages=2",
                                   "--dp=2",
                                   "--ep=2",
                                   "--model_config=" + c.model,
                                   absl::StrCat("--micro_batch_size=", kB),
                                   absl::StrCat("--seq_len=", kT),
                                   absl::StrCat("--microbatches=", c.flags.microbatches),
                                   absl::StrCat("--steps=", steps + 1),
                                   absl::StrCat("--log_every=", steps + 1),
                                   "--eval_every=0",
                                   "--eval_batches=1",
                                   "--planner=" + planner,
                                   "--trace=" + trace};
  if (sub_steps) argv.push_back("--moe_sub_steps");
  if (latency_us > 0) argv.push_back(absl::StrCat("--link_latency_us=", latency_us));
  if (const int code = RunTo(argv, log); code != 0) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(argv, " "), " exited with ", code, "; its output is in ", log));
  }
  ASSIGN_OR_RETURN(runtime::trace::Trace t, runtime::trace::ReadChromeJsonFile(trace));
  ASSIGN_OR_RETURN(runtime::trace::AllToAllOverlap out,
                   runtime::trace::MeasureAllToAllOverlap(runtime::trace::WithoutFirstSteps(t, 1)));
  out.table = absl::StrCat(LastLoss(log), "\n", out.table);
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The injected latency: the F experts sub-step's median compute in a probe run without one.
absl::StatusOr<double> ProbeLatency(const Context& c) {
  if (c.flags.latency_us >= 0) return c.flags.latency_us;
  ASSIGN_OR_RETURN(runtime::trace::AllToAllOverlap probe,
                   RunCluster(c, "1f1b", /*sub_steps=*/true, 0, 3, "probe"));
  if (probe.experts_us <= 0) return absl::InternalError("the probe traced no F experts sub-step");
  return probe.experts_us;
}

struct Series {
  const char* name;
  const char* planner;
  bool sub_steps;
  std::vector<runtime::trace::AllToAllOverlap> runs;
  std::vector<double> Get(double runtime::trace::AllToAllOverlap::*field) const {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*field);
    return v;
  }
};

void PrintRow(const Series& s) {
  using O = runtime::trace::AllToAllOverlap;
  std::printf("  %-22s %10.1f %14.1f %9.0f%% %12.0f\n", s.name, Median(s.Get(&O::step_ms)),
              Median(s.Get(&O::a2a_ms_per_step)), 100.0 * Median(s.Get(&O::hidden_fraction)),
              Median(s.Get(&O::experts_us)));
}

// The flags and a folder for the model, traces and logs; false after a bad flag.
bool Prepare(int argc, char** argv, Context* c) {
  for (int i = 1; i < argc; ++i) {
    if (!ParseFlag(argv[i], &c->flags)) {
      std::fprintf(stderr,
                   "bad flag %s (--microbatches=M, --steps=N >= 1, --repeats=R >= 1, "
                   "--latency_us=L >= 0, --keep=DIR)\n",
                   argv[i]);
      return false;
    }
  }
  c->launch = LaunchBinary(argv[0]);
  c->dir = c->flags.keep;
  if (c->dir.empty()) {
    char tmpl[] = "/tmp/ep_overlap_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return false;
    c->dir = tmpl;
  }
  if (mkdir(c->dir.c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "--keep=%s: cannot create it\n", c->dir.c_str());
    return false;
  }
  c->model = c->dir + "/model.json";
  std::ofstream(c->model) << kModel;
  return true;
}

// Each series' runs, alternating; false (said why) if one fails.
bool RunAll(const Context& c, double latency_us, std::vector<Series>* series) {
  for (int r = 0; r < c.flags.repeats; ++r) {
    for (Series& s : *series) {
      absl::StatusOr<runtime::trace::AllToAllOverlap> run =
          RunCluster(c, s.planner, s.sub_steps, latency_us, c.flags.steps,
                     absl::StrCat(s.planner, "_", r + 1));
      if (!run.ok()) {
        std::fprintf(stderr, "%s: %s\n", s.name, std::string(run.status().message()).c_str());
        return false;
      }
      s.runs.push_back(*std::move(run));
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  Context c;
  if (!Prepare(argc, argv, &c)) return 2;
  absl::StatusOr<double> latency = ProbeLatency(c);
  if (!latency.ok()) {
    std::fprintf(stderr, "%s\n", std::string(latency.status().message()).c_str());
    return 1;
  }
  std::printf(
      "EP all-to-all overlap, 4 processes (--nprocs=4 --dp=2 --ep=2 --stages=2): 4 MoE layers "
      "(8 experts top-2, a shared expert), d_model 64, M=%d, B=%d, T=%d; injected latency %.0f "
      "us per all-to-all call (--link_latency_us: one F experts sub-step's median compute in a "
      "probe run%s); median of %d steps after a warm-up step, median over %d run(s) each; A2A "
      "from the trace summary (per step, summed over replica 0's stages)\n",
      c.flags.microbatches, kB, kT, *latency, c.flags.latency_us >= 0 ? ", given" : "",
      c.flags.steps, c.flags.repeats);
  std::printf("%s (4 workers)\n", runtime::DescribeHostParallelism(4).c_str());
  std::fflush(stdout);
  std::vector<Series> series = {{"1f1b (sub-steps)", "1f1b", true, {}},
                                {"1f1b_overlap", "1f1b_overlap", false, {}}};
  if (!RunAll(c, *latency, &series)) return 1;
  std::printf("  %-22s %10s %14s %10s %12s\n", "planner", "step ms", "A2A ms/step", "hidden",
              "experts us");
  for (const Series& s : series) PrintRow(s);
  using O = runtime::trace::AllToAllOverlap;
  std::printf("  step-time ratio 1f1b / 1f1b_overlap: %.2fx\n",
              Median(series[0].Get(&O::step_ms)) / Median(series[1].Get(&O::step_ms)));
  std::printf("per stage (trace summary, last run of each):\n");
  for (const Series& s : series) std::printf("  %s:\n%s", s.name, s.runs.back().table.c_str());
  // The same training whatever the overlap: the runs' last losses (first line of each table).
  const auto loss = [](const Series& s) {
    return s.runs.back().table.substr(0, s.runs.back().table.find('\n'));
  };
  if (loss(series[0]).empty() || loss(series[0]) != loss(series[1])) {
    std::printf("the two planners' last losses differ: '%s' vs '%s'\n", loss(series[0]).c_str(),
                loss(series[1]).c_str());
    return 1;
  }
  std::printf("both planners: %s (the same bits)\n", loss(series[0]).c_str());
  return 0;
}

}  // namespace
}  // namespace stagehand::tools

int main(int argc, char** argv) { return stagehand::tools::Main(argc, argv); }
