// End-to-end tests of `launch --nprocs`: real worker processes on 127.0.0.1 with the UCX
// data plane. Four workers give bitwise the one-process losses and parameters; a worker
// killed mid-step stops the launch naming it, with no process left behind; a wrong join
// token is refused and logged; hostile connections to every port a worker listens on
// change no loss; a receive that never completes is reported per rank; a
// traced run writes every rank's trace and their merge, and changes no result.
// Every run has a deadline, and its whole process group is killed at the end.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "actors/model_pipeline.h"
#include "gtest/gtest.h"
#include "models/model_config.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/hf_gpt2.h"
#include "runtime/cluster/placement.h"
#include "runtime/data/dataset.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/tokenizer.h"
#include "runtime/dry_run.h"
#include "runtime/io/safetensors.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/summary.h"
#include "runtime/train/batch_rampup.h"
#include "runtime/train/step_specs.h"
#include "runtime/train/training.h"
#include "tools/cluster/rank_env.h"

namespace stagehand::tools {
namespace {

std::string Runfile(const std::string& path) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/stagehand/" + path;
}
std::string TempDir() { return std::getenv("TEST_TMPDIR"); }

std::string Corpus() {
  static const std::string path = [] {
    std::string p = TempDir() + "/corpus.txt";
    std::ofstream out(p);
    for (int i = 0; i < 400; ++i) out << "Pipelines of actors train the same model. " << i << "\n";
    return p;
  }();
  return path;
}

// A process (group) started by a test; its whole group is SIGKILLed on destruction.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      close(fds[0]);
      for (const std::string& e : env) putenv(strdup(e.c_str()));
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(strdup(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    setpgid(pid_, pid_);
    close(fds[1]);
    fd_ = fds[0];
  }
  ~Process() {
    kill(-pid_, SIGKILL);
    if (!exited_) waitpid(pid_, &status_, 0);
    close(fd_);
  }
  // Reads output until `pattern` appears or the process exits or `seconds` pass.
  bool WaitFor(const std::string& pattern, double seconds) {
    const auto end = Deadline(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (output_.find(pattern) != std::string::npos) return true;
      if (!Read(end)) break;
    }
    return output_.find(pattern) != std::string::npos;
  }
  // Waits for the exit; returns the exit status, or -1 after `seconds`.
  int Wait(double seconds) {
    const auto end = Deadline(seconds);
    while (std::chrono::steady_clock::now() < end && Read(end)) {
    }
    while (!exited_ && std::chrono::steady_clock::now() < end) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_)
        exited_ = true;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited_) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  const std::string& output() const { return output_; }
  // Reads what the process has written by now (for at most `seconds`) and returns all output:
  // output() alone holds only what the last WaitFor or Wait read.
  const std::string& Drain(double seconds = 0.1) {
    const auto end = Deadline(seconds);
    while (Read(end)) {
    }
    return output_;
  }
  pid_t pid() const { return pid_; }

 private:
  static std::chrono::steady_clock::time_point Deadline(double s) {
    return std::chrono::steady_clock::now() +
           std::chrono::milliseconds(static_cast<int64_t>(s * 1e3));
  }
  bool Read(std::chrono::steady_clock::time_point end) {  // false at EOF or timeout
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd_, &set);
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    timeval tv{static_cast<time_t>(left.count() / 1000000),
               static_cast<suseconds_t>(left.count() % 1000000)};
    if (select(fd_ + 1, &set, nullptr, nullptr, &tv) <= 0) return false;
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    output_.append(buf, n);
    return true;
  }
  pid_t pid_ = -1;
  int fd_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::string output_;
};

bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

std::vector<pid_t> WorkerPids(const std::string& output) {
  std::vector<pid_t> pids;
  std::regex re("launch: rank \\d+ pid (\\d+)");
  for (std::sregex_iterator it(output.begin(), output.end(), re), end; it != end; ++it) {
    pids.push_back(std::stoi((*it)[1]));
  }
  return pids;
}

// A port nobody listens on right now (the kernel's pick for port 0).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

struct Config {
  int stages = 4, layers = 4, d_model = 32, heads = 2, seq_len = 16, micro_batch_size = 2;
  int microbatches = 8, steps = 3;
  int eval_every = 100, eval_batches = 16;  // launch's defaults
  uint64_t seed = 1337;
  std::string planner = "1f1b";
  std::optional<runtime::BatchRampup> rampup;  // --rampup_batch_size
  int dp = 1;                                  // --dp: replicas of the pipeline
  int zero = 0;                                // --zero: 1 shards AdamW moments (ZeRO-1)
  int ep = 1;                                  // --ep: expert-parallel groups of replicas
  // --model_config (a JSON file) instead of --layers / --d_model / --heads.
  std::string model_config;
  // --packing=documents --reset_position_ids --document_separator='\n': each line of the
  // corpus a document.
  bool packed = false;
  // --seq_len_policy=variable --microbatch_tokens=N (0: fixed lengths).
  int64_t microbatch_tokens = 0;
};

using HeldOut = std::vector<std::pair<int64_t, double>>;  // (step, held-out loss)

std::vector<std::string> LaunchArgs(const Config& c, int nprocs,
                                    const std::vector<std::string>& extra) {
  std::vector<std::string> a = {Runfile("tools/launch"),
                                "--worker=" + Runfile("tools/worker"),
                                "--nprocs=" + std::to_string(nprocs),
                                "--stages=" + std::to_string(c.stages),
                                "--seq_len=" + std::to_string(c.seq_len),
                                "--micro_batch_size=" + std::to_string(c.micro_batch_size),
                                "--microbatches=" + std::to_string(c.microbatches),
                                "--steps=" + std::to_string(c.steps),
                                "--eval_every=" + std::to_string(c.eval_every),
                                "--eval_batches=" + std::to_string(c.eval_batches),
                                "--seed=" + std::to_string(c.seed),
                                "--planner=" + c.planner,
                                "--data=" + Corpus()};
  if (c.model_config.empty()) {
    for (const auto& [flag, value] : {std::pair<const char*, int>{"layers", c.layers},
                                      {"d_model", c.d_model},
                                      {"heads", c.heads}}) {
      a.push_back(absl::StrCat("--", flag, "=", value));
    }
  } else {
    a.push_back("--model_config=" + c.model_config);
  }
  if (c.dp != 1) a.push_back("--dp=" + std::to_string(c.dp));
  if (c.ep != 1) a.push_back("--ep=" + std::to_string(c.ep));
  if (c.zero != 0) a.push_back("--zero=" + std::to_string(c.zero));
  if (c.packed) {
    a.insert(a.end(), {"--packing=documents", "--reset_position_ids", "--document_separator=\\n"});
  }
  if (c.microbatch_tokens > 0) {
    a.insert(a.end(), {"--seq_len_policy=variable",
                       absl::StrCat("--microbatch_tokens=", c.microbatch_tokens)});
  }
  if (c.rampup.has_value()) {
    a.push_back(absl::StrCat("--rampup_batch_size=", c.rampup->start, ",", c.rampup->increment, ",",
                             c.rampup->samples));
  }
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// The same configuration in one process, as tools/launch runs it (data packed by
// runtime/data, cosine LR schedule to 0.1 of --lr at --steps, held-out losses before step 1,
// every eval_every steps and after the last).
void OneProcess(const Config& c, std::vector<double>* losses,
                std::vector<runtime::NamedTensor>* params, HeldOut* held_out = nullptr,
                const std::string& init_from = "") {
  runtime::DatasetOptions data;
  data.path = Corpus();
  data.seq_len = c.seq_len;
  if (c.packed) {
    data.packing = runtime::Packing::kDocuments;
    data.document_separator = "\n";
  }
  runtime::ByteTokenizer bytes;
  auto dataset = runtime::LoadDataset(data, bytes);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  runtime::WindowSampler sampler = runtime::MakeSampler(dataset->train, c.micro_batch_size,
                                                        c.seq_len, c.microbatches * c.dp, c.seed);
  if (c.microbatch_tokens > 0) {
    sampler.SetSeqLenPolicy(runtime::SeqLenPolicy::kVariable, c.microbatch_tokens);
  }
  actors::ModelPipelineOptions o;
  o.dp = c.dp;
  o.zero = c.zero;
  o.ep = c.ep;
  o.model = models::UniformGpt(c.layers, c.d_model, c.heads, 256, c.seq_len, c.seed);
  if (!c.model_config.empty()) {
    absl::StatusOr<models::GptConfig> model = models::LoadModelConfig(c.model_config);
    ASSERT_TRUE(model.ok()) << model.status();
    o.model = *model;
    o.model.seed = c.seed;
  }
  o.chunk = models::ChunkOptions{c.micro_batch_size, c.seq_len, c.microbatches};
  o.chunk.reset_position_ids = c.packed;
  auto planner = runtime::PlannerRegistry::Default().Get(c.planner);
  ASSERT_TRUE(planner.ok());
  o.planner = *planner;
  o.planner_options.num_stages = c.stages;
  o.planner_options.num_microbatches = c.microbatches;
  o.optimizer.adamw.learning_rate = 2e-3;
  o.optimizer.adamw.weight_decay = 0.0;
  o.optimizer.grad_clip = 1.0;
  o.optimizer.schedule = runtime::LearningRateSchedule{0, c.steps, 0.1};
  if (c.rampup.has_value()) {  // each step's M, and the data position after the steps before
    auto ramp = runtime::MicrobatchCalculator::Create(
        int64_t{c.microbatches} * c.micro_batch_size * c.dp, c.micro_batch_size, c.dp, c.rampup);
    ASSERT_TRUE(ramp.ok()) << ramp.status();
    auto specs = runtime::StepSpecs::Create(*o.planner, o.planner_options, *ramp);
    ASSERT_TRUE(specs.ok()) << specs.status();
    o.specs = std::make_shared<const runtime::StepSpecs>(*std::move(specs));
    sampler.SetFirstMicrobatches(ramp->FirstMicrobatches(c.steps, c.micro_batch_size));
  }
  auto mp = actors::BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  if (!init_from.empty()) {
    absl::Status imported = runtime::ImportHfGpt2(init_from, mp->chunk_pointers());
    ASSERT_TRUE(imported.ok()) << imported;
  }
  runtime::WindowSampler held_out_sampler =
      runtime::MakeHeldOutSampler(dataset->validation, c.micro_batch_size, c.seq_len, c.seed);
  auto evaluate = [&](int64_t step) {
    if (held_out == nullptr) return;
    absl::StatusOr<double> loss =
        runtime::Evaluate(mp->chunk_pointers(), held_out_sampler, c.eval_batches);
    ASSERT_TRUE(loss.ok()) << loss.status();
    held_out->emplace_back(step, *loss);
  };
  evaluate(0);
  for (int step = 1; step <= c.steps; ++step) {
    auto out = mp->pipeline->RunStep(step);
    ASSERT_TRUE(out.ok()) << out.status();
    losses->push_back(out->loss);
    if ((c.eval_every > 0 && step % c.eval_every == 0) || step == c.steps) evaluate(step);
  }
  *params = runtime::CollectParameters(mp->chunk_pointers());
}

// Step -> loss (as its hex bits) from rank 0's lines; a step printed twice (run again after
// a restart) keeps its last value.
std::map<int, double> StepLosses(const std::string& out) {
  std::regex re("step (\\d+) loss \\S+ grad_norm \\S+ bits (\\S+)");
  std::map<int, double> got;
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) {
    got[std::stoi((*it)[1])] = std::strtod((*it)[2].str().c_str(), nullptr);
  }
  return got;
}

// Rank 0's step losses in `out` are bit for bit `losses` (steps 1, 2, ...).
void ExpectStepLosses(const std::string& out, const std::vector<double>& losses, const char* what) {
  std::map<int, double> got = StepLosses(out);
  ASSERT_EQ(got.size(), losses.size()) << out;
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_EQ(std::memcmp(&got[i + 1], &losses[i], sizeof(double)), 0)
        << "step " << i + 1 << ": " << got[i + 1] << " vs " << what << " " << losses[i];
  }
}

// (step, loss) from rank 0's held-out lines, step 0 for the one before training.
HeldOut HeldOutLosses(const std::string& out) {
  std::regex re("(?:step (\\d+) held-out loss|held-out loss before training) \\S+ bits (\\S+)");
  HeldOut got;
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) {
    got.emplace_back((*it)[1].matched ? std::stoll((*it)[1]) : 0,
                     std::strtod((*it)[2].str().c_str(), nullptr));
  }
  return got;
}

void ExpectSameHeldOut(const HeldOut& got, const HeldOut& expected, const std::string& context) {
  ASSERT_EQ(got.size(), expected.size()) << context;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(got[i].first, expected[i].first) << context;
    EXPECT_EQ(std::memcmp(&got[i].second, &expected[i].second, sizeof(double)), 0)
        << "held-out loss after step " << expected[i].first << ": " << got[i].second
        << " vs one process " << expected[i].second << "\n"
        << context;
  }
}

// Every rank's --save_params file, merged by tensor name.
void ExpectParametersEqual(const std::string& params, int nprocs,
                           const std::vector<runtime::NamedTensor>& expected) {
  std::map<std::string, runtime::NamedTensor> merged;
  for (int r = 0; r < nprocs; ++r) {
    std::string file =
        params.substr(0, params.size() - 12) + ".rank" + std::to_string(r) + ".safetensors";
    auto tensors = runtime::ReadSafetensors(file);
    ASSERT_TRUE(tensors.ok()) << tensors.status();
    for (auto& [name, t] : *tensors) merged.emplace(name, t);
  }
  ASSERT_EQ(merged.size(), expected.size());
  for (const runtime::NamedTensor& t : expected) {
    auto it = merged.find(t.name);
    ASSERT_NE(it, merged.end()) << t.name << " missing from the cluster's files";
    EXPECT_EQ(it->second.shape, t.shape) << t.name;
    EXPECT_TRUE(it->second.data == t.data) << t.name << " differs from the one-process run";
  }
}

// Returns the launch's output.
std::string ExpectSameAsOneProcess(const Config& c, int nprocs,
                                   std::vector<std::string> flags = {}) {
  const std::string params = TempDir() + "/params_" + std::to_string(nprocs) + ".safetensors";
  flags.push_back("--save_params=" + params);
  Process launch(LaunchArgs(c, nprocs, flags));
  EXPECT_EQ(launch.Wait(120), 0) << launch.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  OneProcess(c, &losses, &expected);
  ExpectStepLosses(launch.output(), losses, "one process");
  ExpectParametersEqual(params, nprocs, expected);
  return launch.output();
}

TEST(Cluster, FourWorkersGiveBitwiseTheOneProcessLossesAndParameters) {
  ExpectSameAsOneProcess(Config{}, 4);
}

// Packed documents (per-document masks and positions, crossing targets masked): every rank
// draws the documents of its microbatches from the same data, bitwise as one process does.
TEST(Cluster, PackedDocumentsOnFourWorkersAreBitwiseTheOneProcessRun) {
  Config c;
  c.packed = true;
  c.planner = "zb_v";  // a V over 4 stages: activations cross the ranks twice
  c.layers = 8;
  const std::string out = ExpectSameAsOneProcess(c, 4);
  EXPECT_NE(out.find("documents packed (per-document attention)"), std::string::npos) << out;
}

// Random lengths per microbatch are a deadlock source elsewhere (Megatron #5100, PyTorch
// #159942): every registered planner at P=4 on four workers, 8 layers (so the V and
// interleaved planners hold two chunks a stage), each bitwise its one-process run.
TEST(Cluster, VariableLengthsOnFourWorkersUnderEveryPlannerAreBitwiseTheOneProcessRun) {
  for (const std::string& name : runtime::PlannerRegistry::Default().Names()) {
    SCOPED_TRACE(name);
    Config c;
    c.planner = name;
    c.layers = 8;
    c.steps = 2;
    c.microbatch_tokens = 20;
    ExpectSameAsOneProcess(c, 4);
  }
}

// Variable-length microbatches (2 x T_m tokens, T_m in [1, 10]) on four workers, with packed
// documents, through a V (zb_v: activations cross the ranks twice): every transfer is sized
// by its microbatch (the notices carry T_m x B x C floats; ClusterComm takes whole tokens up
// to B x seq_len x C), losses and parameters bitwise the one-process run.
TEST(Cluster, VariableLengthsOnFourWorkersAreBitwiseTheOneProcessRun) {
  Config c;
  c.packed = true;
  c.planner = "zb_v";
  c.layers = 8;
  c.microbatch_tokens = 20;
  const std::string out = ExpectSameAsOneProcess(c, 4);
  EXPECT_NE(out.find("8 microbatches of 2 x T_m tokens (--seq_len_policy=variable: T_m in [1, "
                     "10], --microbatch_tokens=20)"),
            std::string::npos)
      << out;
}

TEST(Cluster, TwoWorkersHoldingTwoStagesEachMatchOneProcess) {
  ExpectSameAsOneProcess(Config{}, 2);
}

// A head with its own weight (tied_head false, as Llama's) ties nothing across stages: the
// gates expect no tied gradients from the embedding's and the head's stages, and two workers
// are bitwise the one-process run.
TEST(Cluster, UntiedHeadOnTwoWorkersIsBitwiseTheOneProcessRun) {
  Config c;
  c.stages = 2;
  c.steps = 2;
  c.model_config = TempDir() + "/untied.json";
  std::ofstream(c.model_config) << R"({"vocab_size": 256, "max_seq_len": 16, "d_model": 32,
    "num_heads": 2, "tied_head": false, "norm": "rmsnorm", "activation": "swiglu",
    "positions": "rope", "bias": false,
    "layers": [{"attention": "causal", "mlp": "dense"}, {"attention": "causal", "mlp": "dense"},
               {"attention": "causal", "mlp": "dense"}, {"attention": "causal", "mlp": "dense"}]})";
  ExpectSameAsOneProcess(c, 2);
}

// --rampup_batch_size on 4 workers: every rank re-plans each step for its M (2, 4, then 8
// microbatches of 2 sequences), bit for bit as one process does, traced (the trace changes
// no result, and its merged timeline holds each step at its own M).
TEST(Cluster, BatchRampupOnFourWorkersIsBitwiseTheOneProcessRun) {
  Config c;
  c.steps = 4;
  c.rampup = runtime::BatchRampup{4, 4, 8};
  const std::string trace = TempDir() + "/rampup_trace.json";
  const std::string out = ExpectSameAsOneProcess(c, 4, {"--trace=" + trace});
  absl::StatusOr<runtime::trace::Trace> merged = runtime::trace::ReadChromeJsonFile(trace);
  ASSERT_TRUE(merged.ok()) << merged.status() << "\n" << out;
  absl::StatusOr<runtime::trace::TraceSummary> summary = runtime::trace::Summarize(*merged);
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::vector<int> m;
  for (const runtime::trace::StepTime& step : summary->step_times) m.push_back(step.microbatches);
  EXPECT_EQ(m, (std::vector<int>{2, 4, 8, 8})) << runtime::trace::FormatSummary(*summary);
  for (const char* line : {"batch ramp-up: step 1 global batch 4 sequences (2 microbatches)",
                           "batch ramp-up: step 2 global batch 8 sequences (4 microbatches)",
                           "batch ramp-up: step 3 global batch 16 sequences (8 microbatches)"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
  }
  EXPECT_EQ(out.find("batch ramp-up: step 4"), std::string::npos) << out;
}

// --log_timers in a cluster: rank 0's coordinator reports each phase summed over the stages
// of every rank, with min and max, the held-out pass timed too; a stage slowed on rank 1
// (STAGEHAND_FAULTS=slow=2:40: each forward of stage 2 takes 40 ms longer) is named.
TEST(Cluster, PhaseTimersCoverEveryRankAndNameASlowStage) {
  Config c;
  Process launch(LaunchArgs(c, 2, {"--log_timers", "--log_every=3"}),
                 {"STAGEHAND_FAULTS=slow=2:40"});
  ASSERT_EQ(launch.Wait(120), 0) << launch.output();
  const std::string& out = launch.output();
  EXPECT_NE(out.find("timers (ms) steps 1-3, summed over 4 stages (min, max over stages):"),
            std::string::npos)
      << out;
  std::smatch m;
  std::regex forward("forward \\.+: (\\S+) \\((\\S+), (\\S+)\\)");
  ASSERT_TRUE(std::regex_search(out, m, forward)) << out;
  // 8 microbatches x 3 steps x 40 ms on stage 2 alone.
  EXPECT_GE(std::stod(m[1]), 8 * 3 * 40.0) << out;
  EXPECT_GE(std::stod(m[3]), 8 * 3 * 40.0) << out;
  EXPECT_LT(std::stod(m[2]), std::stod(m[3])) << out;
  std::regex evaluation("evaluation \\.+: (\\S+) ");
  ASSERT_TRUE(std::regex_search(out, m, evaluation)) << out;
  EXPECT_GT(std::stod(m[1]), 0.0) << "the held-out pass before step 1 is timed\n" << out;
  EXPECT_NE(out.find("straggler: stage 2 (rank 1) forward"), std::string::npos) << out;
  // Stage 2's slow forwards keep stage 3 waiting (bubble: its producer still computes); every
  // transfer between the ranks takes time, and a stage idle while one was in flight counts it.
  std::regex exposed("transfers exposed \\.+: (\\S+) ");
  ASSERT_TRUE(std::regex_search(out, m, exposed)) << out;
  EXPECT_GT(std::stod(m[1]), 0.0) << out;
  EXPECT_TRUE(std::regex_search(out, m, std::regex("idle \\(bubble\\) \\.+: (\\S+) "))) << out;
}

// The rerun state machine across ranks: rank 2's gradient gets a flipped bit in step 3's
// first run (STAGEHAND_FAULTS=flip=2:3); rank 0's step driver sees it in the global check,
// re-runs the step on every rank, and the run ends bitwise as the one-process run.
TEST(Cluster, TransientBitFlipOnOneRankIsRerunAndTheRunIsBitwiseTheUnfaultedOne) {
  Config c;
  c.steps = 4;
  const std::string params = TempDir() + "/flip.safetensors";
  Process launch(LaunchArgs(c, 4, {"--save_params=" + params}), {"STAGEHAND_FAULTS=flip=2:3"});
  ASSERT_EQ(launch.Wait(120), 0) << launch.output();
  const std::string& out = launch.output();
  EXPECT_NE(out.find("rerun: step 3: first non-finite gradient"), std::string::npos) << out;
  EXPECT_NE(out.find("transient fault on rank 2 (stage 2)"), std::string::npos) << out;
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  OneProcess(c, &losses, &expected);
  ExpectStepLosses(out, losses, "one process");
  ExpectParametersEqual(params, 4, expected);
}

// A persistent NaN batch (every run of step 2) stops the whole cluster with the report.
TEST(Cluster, PersistentNaNBatchStopsTheClusterWithTheReport) {
  Config c;
  c.steps = 4;
  Process launch(LaunchArgs(c, 4, {}), {"STAGEHAND_FAULTS=nan=2:1"});
  EXPECT_NE(launch.Wait(120), 0) << launch.output();
  EXPECT_NE(
      launch.output().find("step 2 failed: persistent fault, the rerun reproduced it: step 2: "
                           "non-finite loss in microbatch 1 (stage 3)"),
      std::string::npos)
      << launch.output();
}

TEST(Cluster, KilledWorkerStopsTheLaunchNamingItAndLeavesNoProcess) {
  Config c;
  c.steps = 100000;
  c.d_model = 64;
  Process launch(LaunchArgs(c, 4, {}));
  ASSERT_TRUE(launch.WaitFor("step 2 loss", 60)) << launch.output();
  std::vector<pid_t> pids = WorkerPids(launch.output());
  ASSERT_EQ(pids.size(), 4u) << launch.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // mid-step, heartbeats sent
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pids[2], SIGKILL), 0);
  const int code = launch.Wait(20);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  const std::string& out = launch.output();
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(code, -1) << "the launch did not stop within 20 s\n" << out;
  EXPECT_LT(seconds, 10.0) << out;
  EXPECT_NE(out.find("launch: error: rank 2 (pid " + std::to_string(pids[2]) +
                     ") was killed by signal 9"),
            std::string::npos)
      << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("its last action: s2 \\S+"))) << out;
  for (int r : {0, 1, 3}) {  // every other rank noticed and stopped with the reason
    EXPECT_TRUE(std::regex_search(out, std::regex("\\[rank " + std::to_string(r) + "\\] worker " +
                                                  std::to_string(r) + ": error: .*rank 2")))
        << "rank " << r << "\n"
        << out;
  }
  for (pid_t pid : pids) EXPECT_FALSE(Alive(pid)) << "worker pid " << pid << " outlived the launch";
}

TEST(Cluster, HeldOutLossesThroughAVAcrossTwoWorkersAreBitwiseTheOneProcessOnes) {
  Config c;  // zb_v: 8 chunks in a V over 4 stages, so activations cross the ranks twice
  c.planner = "zb_v";
  c.layers = 8;
  c.steps = 4;
  c.eval_every = 2;
  c.eval_batches = 3;
  Process launch(LaunchArgs(c, 2, {}));
  ASSERT_EQ(launch.Wait(120), 0) << launch.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> params;
  HeldOut expected;
  OneProcess(c, &losses, &params, &expected);
  ASSERT_EQ(expected.size(), 3u);  // before training, after steps 2 and 4
  ExpectSameHeldOut(HeldOutLosses(launch.output()), expected, launch.output());
  EXPECT_NE(launch.output().find("held-out loss after 4 steps"), std::string::npos)
      << launch.output();
}

TEST(Cluster, JoinWithAWrongTokenIsRejectedAndLogged) {
  Config c;
  const std::string port = std::to_string(FreePort());
  std::vector<std::string> args = {
      Runfile("tools/worker"), "--join_timeout=8", "--stages=4",        "--layers=4",
      "--d_model=32",          "--heads=2",        "--seq_len=16",      "--micro_batch_size=2",
      "--microbatches=8",      "--steps=1",        "--data=" + Corpus()};
  auto env = [&](int rank, const std::string& token) {
    return std::vector<std::string>{
        "STAGEHAND_RANK=" + std::to_string(rank), "STAGEHAND_WORLD_SIZE=2",
        "STAGEHAND_COORDINATOR=127.0.0.1:" + port, "STAGEHAND_JOIN_TOKEN=" + token};
  };
  Process rank0(args, env(0, "the-right-token"));
  Process intruder(args, env(1, "a-wrong-token"));
  EXPECT_EQ(intruder.Wait(30), 1) << intruder.output();
  // Refused by rank 0's gate before CAF reads a byte (the coordinator's own token check is
  // never reached), and told so at once rather than after --join_timeout.
  EXPECT_NE(intruder.output().find("refused this worker: wrong join token"), std::string::npos)
      << intruder.output();
  EXPECT_TRUE(rank0.WaitFor("wrong join token (its HMAC does not match)", 10)) << rank0.output();
  EXPECT_NE(rank0.output().find("gate: refused 127.0.0.1:"), std::string::npos) << rank0.output();
  // Without a valid rank 1, rank 0 gives up after --join_timeout and exits non-zero.
  EXPECT_EQ(rank0.Wait(30), 1) << rank0.output();
}

// A TCP socket a worker listens on.
struct Listener {
  std::string address;  // numeric: "127.0.0.1", or "ipv6" for any IPv6 address
  int port = 0;
};

// The TCP sockets process `pid` listens on: its socket inodes (/proc/PID/fd) matched against
// the kernel's tables (/proc/PID/net/tcp{,6}; addresses in hex, 0100007F:1F90 is 127.0.0.1:8080).
std::vector<Listener> ListeningSockets(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<std::string> inodes;
  if (DIR* d = opendir((proc + "/fd").c_str())) {
    while (dirent* e = readdir(d)) {
      char target[256] = {0};
      const std::string link = proc + "/fd/" + e->d_name;
      if (readlink(link.c_str(), target, sizeof(target) - 1) > 0 &&
          std::string(target).rfind("socket:[", 0) == 0) {
        inodes.insert(std::string(target).substr(8, std::strlen(target) - 9));
      }
    }
    closedir(d);
  }
  std::vector<Listener> found;
  for (const std::string table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in(proc + table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      f >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      if (state != "0A" || !inodes.count(inode)) continue;  // 0A: LISTEN
      Listener l;
      l.port = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
      if (table == "/net/tcp") {
        in_addr a{static_cast<in_addr_t>(std::stoul(local.substr(0, 8), nullptr, 16))};
        l.address = inet_ntoa(a);
      } else {
        l.address = "ipv6";
      }
      found.push_back(l);
    }
  }
  return found;
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{0, 300000};  // reads wait at most 0.3 s
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// One hostile connection: reads what the server says first (a CAF server sends its BASP
// handshake; the gate its greeting), sends `bytes`, closes its side and reads until closed.
void Attack(int port, const std::string& bytes) {
  int fd = ConnectLoopback(port);
  ASSERT_GE(fd, 0) << "port " << port;
  char buf[4096];
  recv(fd, buf, sizeof(buf), 0);
  send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  for (int i = 0; i < 20 && recv(fd, buf, sizeof(buf), 0) > 0; ++i) {
  }
  close(fd);
}

// The attacks of issue 18 on one port: CAF 0.17's 32-byte empty BASP client_handshake (op 1,
// payload length 0) that crashed rank 0, a header claiming a 4 GiB payload, random bytes, and
// 200 connections at once, held for a second.
void AttackPort(int port, std::mt19937& random) {
  std::string empty_handshake(32, '\0');
  empty_handshake[0] = 1;
  std::string huge_claim = empty_handshake;
  for (int i = 4; i < 8; ++i) huge_claim[i] = '\xff';
  huge_claim += std::string(65536, 'A');
  std::string noise(4096, '\0');
  for (char& ch : noise) ch = static_cast<char>(random());
  Attack(port, empty_handshake);
  Attack(port, huge_claim);
  Attack(port, noise);
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectLoopback(port);
    if (fd >= 0) send(fd, noise.data(), 16, MSG_NOSIGNAL);
    flood.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (int fd : flood) {
    if (fd >= 0) close(fd);
  }
}

TEST(Cluster, HostileConnectionsToEveryListeningPortChangeNoLossAndAreLogged) {
  // Still training when the attacks end, however fast the machine: stage 0's every forward
  // takes 10 ms longer (a fault plan that changes no value), so 200 steps of 8 microbatches
  // last at least 16 s while the attacks take a few. A gate still waiting on a stranger's greeting
  // when the run ends refuses and logs it as it stops, so the count below does not depend on
  // timing.
  Config c;
  c.stages = 4;
  c.d_model = 64;
  c.steps = 200;
  Process launch(LaunchArgs(c, 2, {}), {"STAGEHAND_FAULTS=slow=0:10"});
  ASSERT_TRUE(launch.WaitFor("step 2 loss", 60)) << launch.output();
  std::smatch m;
  const std::string head = launch.output();
  ASSERT_TRUE(std::regex_search(head, m,
                                std::regex("control plane: gate on 127\\.0\\.0\\.1:(\\d+) .*"
                                           "middleman listens on 127\\.0\\.0\\.1:(\\d+) only")))
      << head;
  const int gate = std::stoi(m[1]), caf = std::stoi(m[2]);
  // Every port a worker listens on: the gate, and each rank's UCX. CAF's loopback port and
  // the client sides of the gate closed once every rank joined.
  EXPECT_NE(
      head.find("every rank joined; CAF's port 127.0.0.1:" + std::to_string(caf) + " is closed"),
      std::string::npos)
      << head;
  std::set<int> targets;
  std::vector<pid_t> pids = WorkerPids(head);
  ASSERT_EQ(pids.size(), 2u) << head;
  for (pid_t pid : pids) {
    for (const Listener& l : ListeningSockets(pid)) {
      EXPECT_EQ(l.address, "127.0.0.1") << "pid " << pid << " listens on " << l.address << ":"
                                        << l.port << " with --bind=127.0.0.1";
      EXPECT_NE(l.port, caf) << "CAF's port is still open after every rank joined";
      targets.insert(l.port);
    }
  }
  ASSERT_TRUE(targets.count(gate)) << "the gate is not listening";
  ASSERT_GE(targets.size(), 3u) << "expected the gate and two UCX listeners";
  std::mt19937 random(18);
  for (int port : targets) AttackPort(port, random);
  // The attacks happened while it trained.
  const std::map<int, double> during = StepLosses(launch.Drain());
  ASSERT_FALSE(during.empty());
  EXPECT_LT(during.rbegin()->first, c.steps)
      << "the run ended before the attacks did; give it more steps";

  ASSERT_EQ(launch.Wait(120), 0) << launch.output();
  const std::string& out = launch.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> params;
  OneProcess(c, &losses, &params);
  ExpectStepLosses(out, losses, "undisturbed");
  // Each of the 203 connections to the gate was refused and logged with its address.
  const std::regex refused("gate: refused 127\\.0\\.0\\.1:\\d+: ");
  const auto n =
      std::distance(std::sregex_iterator(out.begin(), out.end(), refused), std::sregex_iterator());
  EXPECT_EQ(n, 203) << out;
  EXPECT_NE(out.find("closed the connection after 32 of 72 greeting bytes"), std::string::npos)
      << out;
  EXPECT_NE(out.find("handshakes already pending (the limit)"), std::string::npos) << out;
  EXPECT_EQ(out.find("no heartbeat"), std::string::npos) << out;
}

// --dp=2 --stages=2 on 4 workers: each rank also runs Gloo for its stage's dp group. Gloo's TCP
// pairs (Debian libgloo 0.0~git20220518) each listen on their own ephemeral port only until the
// pair is connected: the listening side accepts one connection and closes its listener, the
// connecting side closes its listener before it connects. The ports each worker listens on are
// sampled every 20 ms until step 2; once training runs, each worker listens only on UCX (rank 0
// also on the gate), every port sampled earlier that is gone refuses connections, and the same
// attacks as above on every port still listening change no loss of the undisturbed --dp run.
// (The window while Gloo's pairs listen: gloo_collective_test, AStrangerTakingAPair...)
TEST(Cluster, HostileConnectionsToEveryListeningPortOfADataParallelRunChangeNoLoss) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.steps = 200;
  // Still training when the attacks end: stage 0's every forward takes 20 ms longer (as in the
  // test above; no value changes), so the 200 steps of 4 microbatches last at least 16 s.
  Process launch(LaunchArgs(c, 4, {}), {"STAGEHAND_FAULTS=slow=0:20"});
  std::map<pid_t, std::set<int>> seen;  // every port each worker listened on before step 2
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!launch.WaitFor("step 2 loss", 0.02)) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no step 2\n" << launch.output();
    for (pid_t pid : WorkerPids(launch.output())) {
      for (const Listener& l : ListeningSockets(pid)) seen[pid].insert(l.port);
    }
  }
  const std::string head = launch.output();
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(head, m, std::regex("control plane: gate on 127\\.0\\.0\\.1:(\\d+) ")))
      << head;
  const int gate = std::stoi(m[1]);
  std::vector<pid_t> pids = WorkerPids(head);
  ASSERT_EQ(pids.size(), 4u) << head;
  std::set<int> targets, closed;
  for (pid_t pid : pids) {
    std::set<int> now;
    for (const Listener& l : ListeningSockets(pid)) {
      EXPECT_EQ(l.address, "127.0.0.1") << "pid " << pid << " listens on " << l.address << ":"
                                        << l.port << " with --bind=127.0.0.1";
      now.insert(l.port);
      targets.insert(l.port);
    }
    // Once training runs a worker listens only on UCX (and rank 0 also on the gate).
    EXPECT_EQ(now.size(), pid == pids[0] ? 2u : 1u) << "pid " << pid;
    for (int port : seen[pid]) {
      if (!now.count(port)) closed.insert(port);
    }
  }
  ASSERT_TRUE(targets.count(gate)) << "the gate is not listening";
  ASSERT_EQ(targets.size(), 5u) << "expected the gate and four UCX listeners";
  // The ports that closed: CAF's, the client sides of the gate, and Gloo's pair listeners (every
  // rank is in one group of 2: one pair each, seen at least on one side).
  std::printf("ports that listened while joining and are closed now: %zu\n", closed.size());
  for (int port : closed) {
    int fd = ConnectLoopback(port);
    EXPECT_LT(fd, 0) << "port " << port << " listened while joining and still accepts";
    if (fd >= 0) close(fd);
  }
  std::mt19937 random(18);
  for (int port : targets) AttackPort(port, random);
  const std::map<int, double> during = StepLosses(launch.Drain());
  ASSERT_FALSE(during.empty());
  EXPECT_LT(during.rbegin()->first, c.steps)
      << "the run ended before the attacks did; give it more steps";

  ASSERT_EQ(launch.Wait(240), 0) << launch.output();
  const std::string& out = launch.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> params;
  OneProcess(c, &losses, &params);
  ExpectStepLosses(out, losses, "the undisturbed one-process --dp=2 run");
  const std::regex refused("gate: refused 127\\.0\\.0\\.1:\\d+: ");
  const auto n =
      std::distance(std::sregex_iterator(out.begin(), out.end(), refused), std::sregex_iterator());
  EXPECT_EQ(n, 203) << out;
  EXPECT_EQ(out.find("no heartbeat"), std::string::npos) << out;
  EXPECT_EQ(out.find("gloo"), std::string::npos) << out;
}

TEST(Cluster, ReceiveThatNeverCompletesIsReportedPerRank) {
  Config c;
  c.stages = 2;
  c.steps = 1000;
  Process launch(LaunchArgs(c, 2, {"--hang_timeout=3"}), {"STAGEHAND_FAULTS=withhold=1:3"});
  const int code = launch.Wait(60);
  const std::string& out = launch.output();
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("did not finish within --hang_timeout=3s"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 0 (last action:"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1 (last action:"), std::string::npos) << out;
  EXPECT_NE(out.find("receive withheld by the test hook"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("stage 0: .*wait"))) << out;
  for (pid_t pid : WorkerPids(out)) EXPECT_FALSE(Alive(pid)) << pid;
}

TEST(Cluster, KilledWorkerIsRestartedFromTheLastCheckpointAndEndsBitwiseAsWithoutFailure) {
  Config c;
  c.steps = 6;
  const std::string params = TempDir() + "/restart.safetensors", root = TempDir() + "/restart_ckpt";
  // Rank 2 SIGKILLs itself in step 4's forward pass on the first attempt only, after the
  // checkpoint of step 2 and before that of step 4.
  Process launch(LaunchArgs(c, 4,
                            {"--save_params=" + params, "--checkpoint_dir=" + root,
                             "--checkpoint_every=2", "--restarts=1"}),
                 {"STAGEHAND_FAULTS=kill=2:4"});
  const int code = launch.Wait(150);
  const std::string& out = launch.output();
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("checkpoint: step 2 in " + root + "/step_00000002"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(
      out, std::regex("launch: rank 2 \\(pid \\d+\\) was killed by signal 9; its last "
                      "action: [^;\\n]*; restarting the cluster "
                      "\\(restart 1 of 1\\) from the checkpoint of step 2")))
      << out;
  EXPECT_NE(out.find("resumed from " + root + "/step_00000002 (step 2)"), std::string::npos) << out;
  EXPECT_NE(out.find("running steps 3..6"), std::string::npos) << out;
  EXPECT_NE(out.find("launch: all 4 workers finished (after 1 restart)"), std::string::npos) << out;
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  OneProcess(c, &losses, &expected);
  ExpectStepLosses(out, losses, "the run without failure");
  ExpectParametersEqual(params, 4, expected);
  // The last checkpoint is complete (every rank's shard, checksums) and holds every loss.
  std::vector<std::string> skipped;
  auto info = runtime::FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->meta.step, 6);
  EXPECT_EQ(info->shards.size(), 4u);
  EXPECT_EQ(info->meta.run["history"]["train_loss"].get<std::vector<double>>(), losses);
  HeldOut held_out;  // before training (in the first attempt) and after step 6
  std::vector<double> again;
  std::vector<runtime::NamedTensor> again_params;
  OneProcess(c, &again, &again_params, &held_out);
  ExpectSameHeldOut(info->meta.run["history"]["validation_loss"].get<HeldOut>(), held_out, out);
  std::vector<pid_t> pids = WorkerPids(out);
  EXPECT_EQ(pids.size(), 8u) << out;
  for (pid_t pid : pids) EXPECT_FALSE(Alive(pid)) << "worker pid " << pid << " outlived the launch";
}

TEST(Cluster, WhenRestartsAreUsedUpTheLaunchFailsNamingTheDeadRank) {
  Config c;
  c.steps = 4;
  const std::string root = TempDir() + "/exhausted_ckpt";
  // Rank 1 dies in step 2 on every attempt.
  Process launch(
      LaunchArgs(c, 4, {"--checkpoint_dir=" + root, "--checkpoint_every=1", "--restarts=1"}),
      {"STAGEHAND_FAULTS=kill=1:2:9"});
  const int code = launch.Wait(120);
  const std::string& out = launch.output();
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("restarting the cluster (restart 1 of 1) from the checkpoint of step 1"),
            std::string::npos)
      << out;
  EXPECT_TRUE(std::regex_search(
      out, std::regex("launch: error: rank 1 \\(pid \\d+\\) was killed by signal 9; its "
                      "last action: [^\\n]* \\(restarts used: 1 of 1\\)")))
      << out;
  for (pid_t pid : WorkerPids(out)) EXPECT_FALSE(Alive(pid)) << pid;
}

// Every rank's --save_params file, merged by tensor name.
std::map<std::string, std::vector<float>> RankParameters(const std::string& params, int nprocs) {
  std::map<std::string, std::vector<float>> merged;
  for (int r = 0; r < nprocs; ++r) {
    std::string file =
        params.substr(0, params.size() - 12) + ".rank" + std::to_string(r) + ".safetensors";
    auto tensors = runtime::ReadSafetensors(file);
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    if (!tensors.ok()) continue;
    for (auto& [name, t] : *tensors) merged.emplace(name, t.data);
  }
  return merged;
}

// Two workers with two stages each, traced: every rank writes its file, the launcher merges
// them into one trace that holds every stage's planned compute in every step, each
// cross-rank send joined to its receive, and one span per step; and the run's losses and
// parameters are bitwise those of the same run untraced.
TEST(Cluster, TracedRunIsMergedFromEveryRankAndChangesNoResult) {
  Config c;
  const int nprocs = 2;
  const std::string trace = TempDir() + "/cluster_trace.json";
  const std::string plain_params = TempDir() + "/untraced.safetensors";
  const std::string traced_params = TempDir() + "/traced.safetensors";
  Process plain(LaunchArgs(c, nprocs, {"--save_params=" + plain_params}));
  ASSERT_EQ(plain.Wait(120), 0) << plain.output();
  Process traced(LaunchArgs(c, nprocs, {"--save_params=" + traced_params, "--trace=" + trace}));
  ASSERT_EQ(traced.Wait(120), 0) << traced.output();
  EXPECT_TRUE(std::regex_search(traced.output(),
                                std::regex("trace: \\d+ events from 2 ranks written to " + trace)))
      << traced.output();

  // Results: bitwise the untraced run's.
  std::map<int, double> want = StepLosses(plain.output()), got = StepLosses(traced.output());
  ASSERT_EQ(want.size(), static_cast<size_t>(c.steps)) << plain.output();
  ASSERT_EQ(got.size(), want.size()) << traced.output();
  for (const auto& [step, loss] : want) {
    EXPECT_EQ(std::memcmp(&got[step], &loss, sizeof(double)), 0) << "step " << step;
  }
  EXPECT_TRUE(RankParameters(traced_params, nprocs) == RankParameters(plain_params, nprocs))
      << "tracing changed the parameters";

  // Each rank's own file holds its stages' compute only (2 stages per rank).
  for (int r = 0; r < nprocs; ++r) {
    auto part = runtime::trace::ReadChromeJsonFile(RankTraceFile(trace, r));
    ASSERT_TRUE(part.ok()) << part.status();
    EXPECT_EQ(part->process, "rank " + std::to_string(r));
    std::set<int> stages;
    for (const auto& s : part->spans) {
      if (s.lane == runtime::trace::Lane::kCompute) stages.insert(s.stage);
    }
    EXPECT_EQ(stages, (std::set<int>{2 * r, 2 * r + 1})) << "rank " << r;
  }

  auto merged = runtime::trace::ReadChromeJsonFile(trace);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->num_stages, c.stages);
  EXPECT_EQ(merged->num_microbatches, c.microbatches);
  // Steps joined: one span per step, however many ranks recorded it.
  ASSERT_EQ(merged->steps.size(), static_cast<size_t>(c.steps));
  for (int i = 0; i < c.steps; ++i) EXPECT_EQ(merged->steps[i].step, i + 1);
  // ... and each holds every compute span tagged with it, on either rank (rank 0's step
  // begins before, and ends after, any rank's work of it; 1 ms allows for the two
  // processes' clocks being mapped onto one through their wall clocks).
  for (const auto& s : merged->spans) {
    if (s.lane != runtime::trace::Lane::kCompute) continue;
    ASSERT_TRUE(s.step >= 1 && s.step <= c.steps)
        << runtime::trace::SpanLabel(s) << " step " << s.step;
    const auto& step = merged->steps[s.step - 1];
    EXPECT_GE(s.begin_us, step.begin_us - 1000) << runtime::trace::SpanLabel(s) << " s" << s.stage;
    EXPECT_LE(s.end_us, step.end_us + 1000) << runtime::trace::SpanLabel(s) << " s" << s.stage;
  }

  // Compute: per step and stage, as many of each kind as the plan has.
  auto planner = runtime::PlannerRegistry::Default().Get(c.planner);
  ASSERT_TRUE(planner.ok());
  runtime::PlannerOptions po;
  po.num_stages = c.stages;
  po.num_microbatches = c.microbatches;
  auto plan = runtime::ValidatePlanner(**planner, po);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::pair<int, runtime::ActionKind>, int> planned;  // (stage, kind) -> per step
  for (int stage = 0; stage < static_cast<int>(plan->rows.size()); ++stage) {
    for (const auto& cell : plan->rows[stage]) {
      for (const runtime::Action& a : cell) ++planned[{stage, a.kind}];
    }
  }
  ASSERT_FALSE(planned.empty());
  std::map<std::tuple<int64_t, int, runtime::ActionKind>, int> recorded;  // (step, stage, kind)
  for (const auto& s : merged->spans) {
    if (s.lane == runtime::trace::Lane::kCompute && s.kind != runtime::ActionKind::kOptimizer) {
      ++recorded[{s.step, s.stage, s.kind}];
    }
  }
  for (int step = 1; step <= c.steps; ++step) {
    for (const auto& [stage_kind, count] : planned) {
      EXPECT_EQ((recorded[{step, stage_kind.first, stage_kind.second}]), count)
          << "step " << step << " stage " << stage_kind.first << " "
          << runtime::ActionKindName(stage_kind.second);
    }
  }
  size_t planned_total = 0;
  for (const auto& [k, n] : planned) planned_total += n;
  size_t recorded_total = 0;
  for (const auto& [k, n] : recorded) recorded_total += n;
  EXPECT_EQ(recorded_total, planned_total * c.steps);

  // Transfers: every send has its receive and every receive its send; a receive from the
  // other rank starts when its send did (matched by the merge).
  std::map<uint64_t, const runtime::trace::Span*> sends, receives;
  for (const auto& s : merged->spans) {
    if (s.lane == runtime::trace::Lane::kSend) sends[runtime::trace::TransferFlowId(s)] = &s;
    if (s.lane == runtime::trace::Lane::kRecv) receives[runtime::trace::TransferFlowId(s)] = &s;
  }
  ASSERT_FALSE(sends.empty());
  EXPECT_EQ(sends.size(), receives.size());
  int cross_rank = 0;
  for (const auto& [id, send] : sends) {
    auto it = receives.find(id);
    ASSERT_NE(it, receives.end()) << runtime::trace::SpanLabel(*send) << " (step " << send->step
                                  << ") has no receive";
    if (send->stage / 2 != send->peer / 2) {
      ++cross_rank;
      EXPECT_EQ(it->second->begin_us, send->begin_us) << runtime::trace::SpanLabel(*send);
      EXPECT_GT(send->end_us, send->begin_us)
          << runtime::trace::SpanLabel(*send) << ": a UCX send takes time";
    }
  }
  // Per step: s1 -> s2 activations and s2 -> s1 gradients, one per microbatch.
  EXPECT_EQ(cross_rank, 2 * c.microbatches * c.steps);
}

// A Hugging Face-named GPT-2 file with weights unlike the seeded initialisation: the
// one-process export of a model built with another seed.
std::string HfFile(const Config& c) {
  const std::string path = TempDir() + "/hf_seed7.safetensors";
  Config other = c;
  other.seed = 7;
  std::vector<std::string> args = LaunchArgs(other, 1, {"--steps=1", "--export=" + path});
  args.erase(args.begin() + 1, args.begin() + 3);  // one process: no --worker, no --nprocs
  Process launch(args);
  EXPECT_EQ(launch.Wait(120), 0) << launch.output();
  return path;
}

TEST(Cluster, InitFromAHuggingFaceFileOnFourWorkersGivesBitwiseTheOneProcessLosses) {
  Config c;
  const std::string hf = HfFile(c);
  Process launch(LaunchArgs(c, 4, {"--init_from=" + hf}));
  ASSERT_EQ(launch.Wait(120), 0) << launch.output();
  for (int r = 0; r < 4; ++r) {
    EXPECT_NE(launch.output().find("[rank " + std::to_string(r) + "] rank " + std::to_string(r) +
                                   ": initial weights from " + hf),
              std::string::npos)
        << launch.output();
  }
  std::vector<double> losses, seeded;
  std::vector<runtime::NamedTensor> params;
  OneProcess(c, &losses, &params, nullptr, hf);
  OneProcess(c, &seeded, &params);
  ExpectStepLosses(launch.output(), losses, "one process");
  EXPECT_NE(losses[0], seeded[0]) << "the imported weights changed nothing";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(Cluster, ExportFromAClusterRunIsByteForByteTheOneProcessExport) {
  Config c;
  c.planner = "interleaved";  // 8 chunks: those of a rank are not contiguous in model order
  c.layers = 8;
  const std::string from_cluster = TempDir() + "/export_cluster.safetensors";
  const std::string from_one = TempDir() + "/export_one.safetensors";
  Process cluster(LaunchArgs(c, 2, {"--export=" + from_cluster}));
  ASSERT_EQ(cluster.Wait(120), 0) << cluster.output();
  EXPECT_NE(cluster.output().find("exported Hugging Face GPT-2 weights to " + from_cluster),
            std::string::npos)
      << cluster.output();
  std::vector<std::string> args = LaunchArgs(c, 1, {"--export=" + from_one});
  args.erase(args.begin() + 1, args.begin() + 3);  // one process
  Process one(args);
  ASSERT_EQ(one.Wait(120), 0) << one.output();
  const std::string a = ReadFile(from_cluster), b = ReadFile(from_one);
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "the cluster's export differs from the one-process export";
  for (int r = 0; r < 2; ++r) {
    EXPECT_FALSE(std::ifstream(from_cluster + ".part.rank" + std::to_string(r)).good())
        << "part left behind";
  }
}

// Each rank's line "rank R: optimizer state (AdamW moments held, `how`): H MiB (unsharded U
// MiB)": R -> (H, U).
std::map<int, std::pair<double, double>> OptimizerStateLines(const std::string& out,
                                                             const std::string& how) {
  const std::regex line("rank (\\d+): optimizer state \\(AdamW moments held, " + how +
                        "\\): (\\S+) MiB \\(unsharded (\\S+) MiB\\)");
  std::map<int, std::pair<double, double>> held;
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    held[std::stoi((*it)[1])] = {std::stod((*it)[2]), std::stod((*it)[3])};
  }
  return held;
}

// Each replica's ranks hold every tensor; with --ep > 1 each holds its member's experts only,
// and the ep members of an edp group (replicas 0 .. ep - 1) every tensor together.
void ExpectReplicasCover(const std::vector<std::set<std::string>>& covered, int ep,
                         size_t tensors) {
  std::set<std::string> together;
  for (size_t d = 0; d < covered.size(); ++d) {
    if (ep == 1) {
      EXPECT_EQ(covered[d].size(), tensors) << "replica " << d << " misses tensors";
    } else {
      EXPECT_LT(covered[d].size(), tensors) << "replica " << d << " holds every expert";
    }
    if (static_cast<int>(d) < ep) together.insert(covered[d].begin(), covered[d].end());
    // Replica d's member is d % ep: the replicas of one edp group hold the same experts.
    EXPECT_EQ(covered[d], covered[d % ep]) << "replica " << d << " and replica " << d % ep;
  }
  EXPECT_EQ(together.size(), tensors) << "the first edp group's ranks miss tensors";
}

// --dp=2 --stages=2 on 4 workers (rank r: replica r % 2, stage r / 2): every rank's --save_params
// file holds its stage's tensors, bitwise those of the one-process --dp=2 --stages=2 run, and
// so do the losses and held-out losses. Returns the launch's output.
std::string ExpectDataParallelSameAsOneProcess(const Config& c, const std::string& params,
                                               const std::vector<std::string>& extra,
                                               const std::vector<std::string>& env = {}) {
  const int nprocs = c.dp * c.stages;
  std::vector<std::string> flags = {"--save_params=" + params};
  flags.insert(flags.end(), extra.begin(), extra.end());
  Process launch(LaunchArgs(c, nprocs, flags), env);
  EXPECT_EQ(launch.Wait(180), 0) << launch.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  HeldOut held_out;
  OneProcess(c, &losses, &expected, &held_out);
  ExpectStepLosses(launch.output(), losses, "one process");
  ExpectSameHeldOut(HeldOutLosses(launch.output()), held_out, launch.output());
  std::map<std::string, const runtime::NamedTensor*> by_name;
  for (const runtime::NamedTensor& t : expected) by_name[t.name] = &t;
  std::vector<std::set<std::string>> covered(c.dp);  // per replica, the tensors its ranks hold
  for (int r = 0; r < nprocs; ++r) {
    auto tensors = runtime::ReadSafetensors(runtime::RankFile(params, r));
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    if (!tensors.ok()) continue;
    for (const auto& [name, t] : *tensors) {
      auto it = by_name.find(name);
      EXPECT_NE(it, by_name.end()) << name << " of rank " << r << " is not a model tensor";
      if (it == by_name.end()) continue;
      EXPECT_TRUE(t.data == it->second->data) << name << " of rank " << r << " (replica "
                                              << r % c.dp << ") differs from the one-process run";
      covered[r % c.dp].insert(name);
    }
  }
  ExpectReplicasCover(covered, c.ep, expected.size());
  return launch.output();
}

// Traced too: replica 0's ranks (0 and 2) write the trace files, merged into one pipeline's
// trace whose stages each hold their REDUCE_GRAD spans in every step.
TEST(Cluster, DataParallelTwoByTwoOnFourWorkersIsBitwiseTheOneProcessRun) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.steps = 3;
  const std::string trace = TempDir() + "/dp_trace.json";
  const std::string out =
      ExpectDataParallelSameAsOneProcess(c, TempDir() + "/dp.safetensors", {"--trace=" + trace});
  for (const char* line : {"grid: world 4 = dp 2 x pp 2", "rank 3: dp=1 pp=1",
                           "data parallel: 2 replicas x 4 microbatches = 8 microbatches a step"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
  }
  EXPECT_TRUE(
      std::regex_search(out, std::regex("trace: \\d+ events from 2 ranks written to " + trace)))
      << out;
  auto merged = runtime::trace::ReadChromeJsonFile(trace);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->num_stages, c.stages);
  ASSERT_EQ(merged->steps.size(), static_cast<size_t>(c.steps));
  std::map<std::pair<int64_t, int>, int> reductions;  // (step, stage) -> REDUCE_GRAD spans
  for (const auto& span : merged->spans) {
    if (span.kind == runtime::ActionKind::kReduceGrad) ++reductions[{span.step, span.stage}];
  }
  for (int step = 1; step <= c.steps; ++step) {
    for (int stage = 0; stage < c.stages; ++stage) {
      EXPECT_GE((reductions[{step, stage}]), 1) << "step " << step << " stage " << stage;
    }
  }
}

// Variable lengths with --dp=2 on 4 workers: replica d draws the step's global microbatches
// d x M .. and their lengths, as one process does; each replica's loss stage weighs its
// microbatches by the whole step's tokens. Bitwise the one-process --dp=2 run.
TEST(Cluster, DataParallelVariableLengthsOnFourWorkersAreBitwiseTheOneProcessRun) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.microbatch_tokens = 20;
  ExpectDataParallelSameAsOneProcess(c, TempDir() + "/dp_variable.safetensors", {});
}

// --rampup_batch_size under --dp=2 on 4 workers: the global batch (both replicas' sequences)
// ramps 4, 8, then 16, so each replica runs 1, 2, then 4 microbatches, bitwise as the
// one-process --dp=2 run; and that run is within 1e-5 of the sequential one (--dp=1, the same
// ramp in 2, 4, then 8 microbatches: the same sequences, another summation order).
TEST(Cluster, BatchRampupUnderDataParallelOnFourWorkersIsBitwiseTheOneProcessRun) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.steps = 3;
  c.rampup = runtime::BatchRampup{4, 4, 8};
  const std::string out =
      ExpectDataParallelSameAsOneProcess(c, TempDir() + "/dp_ramp.safetensors", {});
  for (const char* line :
       {"batch ramp-up: step 1 global batch 4 sequences (1 microbatches per replica)",
        "batch ramp-up: step 2 global batch 8 sequences (2 microbatches per replica)",
        "batch ramp-up: step 3 global batch 16 sequences (4 microbatches per replica)"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
  }
  std::vector<double> replicated, sequential;
  std::vector<runtime::NamedTensor> replicated_params, sequential_params;
  OneProcess(c, &replicated, &replicated_params);
  Config seq = c;
  seq.dp = 1;
  seq.microbatches = c.microbatches * c.dp;
  OneProcess(seq, &sequential, &sequential_params);
  ASSERT_EQ(replicated.size(), sequential.size());
  for (size_t i = 0; i < sequential.size(); ++i) {
    EXPECT_NEAR(replicated[i], sequential[i], 1e-5 * std::abs(sequential[i])) << "step " << i + 1;
  }
  ASSERT_EQ(replicated_params.size(), sequential_params.size());
  for (size_t k = 0; k < sequential_params.size(); ++k) {
    const std::vector<float>& a = replicated_params[k].data;
    const std::vector<float>& b = sequential_params[k].data;
    ASSERT_EQ(a.size(), b.size()) << sequential_params[k].name;
    float scale = 0;
    for (float v : b) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < b.size(); ++i) {
      ASSERT_NEAR(a[i], b[i], 1e-5 * scale) << sequential_params[k].name << "[" << i << "]";
    }
  }
}

// --dp=2 --ep=2 --stages=2 with a model of two MoE layers of four experts.
Config ExpertParallelConfig() {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.ep = 2;
  c.microbatches = 4;
  c.steps = 3;
  c.model_config = TempDir() + "/ep_moe.json";
  std::ofstream(c.model_config) << R"({"vocab_size": 256, "max_seq_len": 16, "d_model": 32,
    "num_heads": 2, "moe": {"num_experts": 4, "top_k": 2, "ffn_hidden": 64,
    "capacity_factor": 1.25, "aux_loss_coeff": 0.01},
    "layers": [{"attention": "causal", "mlp": "dense"}, {"attention": "causal", "mlp": "moe"},
               {"attention": "causal", "mlp": "moe"}, {"attention": "causal", "mlp": "dense"}]})";
  return c;
}

// --zero=0 --ep=2 on ExpertParallelConfig's model: each of the `ranks` ranks' optimizer state
// line says it holds the moments of its member's two experts of its stage's four (one MoE layer,
// each expert 2 x 32 x 64 weights and their biases): two experts' fewer than the whole stage
// (what --ep=1 holds), the dense part and the router being the same.
void ExpectTwoExpertsFewerMoments(const std::string& out, size_t ranks) {
  const double two_experts_mib = 2.0 * sizeof(float) * 2 * (2 * 32 * 64) / 1048576.0;
  const auto held = OptimizerStateLines(out, "experts split over ep 2");
  for (const auto& [rank, mib] : held) {
    EXPECT_NEAR(mib.second - mib.first, two_experts_mib, 0.003) << "rank " << rank;
  }
  EXPECT_EQ(held.size(), ranks) << out;
}

// --dp=2 --ep=2 --stages=2 on 4 workers: each stage's two replicas are one expert-parallel
// group (a Gloo group of its own); each computes two of the MoE layer's four experts on both
// replicas' tokens, dispatch and combine are Gloo all-to-alls. Losses, held-out losses and
// every rank's parameters are bitwise those of the one-process --dp=2 --ep=2 run.
TEST(Cluster, ExpertParallelTwoByTwoOnFourWorkersIsBitwiseTheOneProcessRun) {
  // The collectives' modelled link (--link_latency_us: a LatencyCollective around each Gloo
  // group) delays every call and changes no bit.
  const std::string out = ExpectDataParallelSameAsOneProcess(
      ExpertParallelConfig(), TempDir() + "/ep.safetensors", {"--link_latency_us=200"});
  for (const char* line : {"grid: world 4 = ep 2 x edp 1 x pp 2",
                           "expert parallel: groups of 2 replicas (dp = ep 2 x edp 1)"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
  }
  ExpectTwoExpertsFewerMoments(out, 4);
}

// The same under the planners that overlap sub-steps: every worker runs its MoE actions as
// sub-steps, dispatch / combine on its communication lane (the ep group's Gloo all-to-alls, in
// the order the plan fixes: runtime::StageLoop::OrderCommunication) beside the other
// microbatch's compute, and the run stays bitwise the one-process one. The trace shows the
// all-to-alls on each stage's a2a lane, some of them under the same stage's compute.
TEST(Cluster, ExpertParallelOverlappedPlannersOnFourWorkersAreBitwiseTheOneProcessRun) {
  for (const std::string planner : {"1f1b_overlap", "dualpipe_v"}) {
    SCOPED_TRACE(planner);
    Config c = ExpertParallelConfig();
    c.planner = planner;
    const std::string trace = TempDir() + "/ep_" + planner + ".json";
    ExpectDataParallelSameAsOneProcess(c, TempDir() + "/ep_" + planner + ".safetensors",
                                       {"--link_latency_us=200", "--trace=" + trace});
    auto merged = runtime::trace::ReadChromeJsonFile(trace);
    ASSERT_TRUE(merged.ok()) << merged.status();
    auto summary = runtime::trace::Summarize(*merged, {});
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_GT(summary->a2a_us, 0);
    EXPECT_GT(summary->hidden_a2a_us, 0);
  }
}

// --dp=4 --ep=2 --stages=2 on 8 workers (ep 2 x edp 2): each expert lives on two replicas, so
// besides its ep group's all-to-alls each rank sums its experts' gradients over its stage's
// expert-data-parallel group (edp.s<stage>.m<member>: replicas member and member + 2) and the
// dense ones over all 4 replicas; with --zero=1 it reduce-scatters them there instead, the dense
// moments sharded over the 4 replicas and its experts' over edp 2. Losses, held-out losses and
// every rank's parameters are bitwise the one-process run of the same flags.
TEST(Cluster, ExpertDataParallelTwoOnEightWorkersIsBitwiseTheOneProcessRun) {
  for (int zero : {0, 1}) {
    SCOPED_TRACE(absl::StrCat("--zero=", zero));
    Config c = ExpertParallelConfig();
    c.dp = 4;
    c.zero = zero;
    c.eval_every = 2;
    const std::string out = ExpectDataParallelSameAsOneProcess(
        c, absl::StrCat(TempDir(), "/edp_zero", zero, ".safetensors"), {});
    for (const char* line :
         {"grid: world 8 = ep 2 x edp 2 x pp 2",
          "rank 3: ep=1 edp=1 pp=0  ep-group {2,3}  edp-group {1,3}  pp-group {3,7}",
          "expert parallel: groups of 2 replicas (dp = ep 2 x edp 2)"}) {
      EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
    }
    if (zero == 0) {
      ExpectTwoExpertsFewerMoments(out, 8);
      continue;
    }
    // A quarter of the dense moments and half of its member's two experts': a quarter of what
    // --zero=0 --ep=1 holds.
    const auto held = OptimizerStateLines(
        out, "experts split over ep 2, ZeRO-1: dense over 4 replicas, experts over edp 2");
    for (const auto& [rank, mib] : held) {
      EXPECT_NEAR(4 * mib.first, mib.second, 0.004) << "rank " << rank;
    }
    EXPECT_EQ(held.size(), 8u) << out;
  }
}

// tools/launch's arguments for `c` in one process (no --nprocs, no workers).
std::vector<std::string> OneProcessLaunchArgs(const Config& c,
                                              const std::vector<std::string>& extra) {
  std::vector<std::string> a;
  for (const std::string& arg : LaunchArgs(c, 1, extra)) {
    if (!absl::StartsWith(arg, "--nprocs=") && !absl::StartsWith(arg, "--worker=")) {
      a.push_back(arg);
    }
  }
  return a;
}

// One --save_params file holds exactly `expected`, bit for bit.
void ExpectFileHolds(const std::string& file, const std::vector<runtime::NamedTensor>& expected) {
  auto tensors = runtime::ReadSafetensors(file);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), expected.size()) << file;
  for (const runtime::NamedTensor& t : expected) {
    auto it = tensors->find(t.name);
    ASSERT_NE(it, tensors->end()) << t.name << " missing from " << file;
    EXPECT_TRUE(it->second.data == t.data) << t.name << " of " << file << " differs";
  }
}

// An --ep=2 checkpoint moves between 4 workers and one process, both ways, in the one global
// format (whole experts, gathered over each stage's ep group): the cluster's checkpoint of step
// 2 resumes in one process, one process's resumes on 4 workers (each rank taking its member's
// experts by name), and both end bitwise as the uninterrupted run.
TEST(Cluster, ExpertParallelCheckpointMovesBetweenFourWorkersAndOneProcess) {
  Config c = ExpertParallelConfig();
  c.steps = 4;
  c.eval_every = 2;
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  OneProcess(c, &losses, &expected);
  const std::string cluster_root = TempDir() + "/ep_move_cluster";
  const std::string one_root = TempDir() + "/ep_move_one";
  {
    Process cluster(LaunchArgs(c, 4, {"--checkpoint_dir=" + cluster_root, "--exit_after=2"}));
    ASSERT_EQ(cluster.Wait(180), 0) << cluster.output();
    Process one(OneProcessLaunchArgs(c, {"--checkpoint_dir=" + one_root, "--exit_after=2"}));
    ASSERT_EQ(one.Wait(180), 0) << one.output();
  }
  // The cluster's checkpoint in one process.
  const std::string one_params = TempDir() + "/ep_move_one.safetensors";
  Process one(OneProcessLaunchArgs(
      c, {"--checkpoint_dir=" + cluster_root, "--resume", "--save_params=" + one_params}));
  ASSERT_EQ(one.Wait(180), 0) << one.output();
  EXPECT_NE(one.output().find("resumed from " + cluster_root + "/step_00000002 (step 2)"),
            std::string::npos)
      << one.output();
  ExpectFileHolds(one_params, expected);
  // One process's checkpoint on 4 workers: steps 3 and 4 as uninterrupted, every rank's tensors.
  const std::string cluster_params = TempDir() + "/ep_move_cluster.safetensors";
  Process cluster(LaunchArgs(
      c, 4, {"--checkpoint_dir=" + one_root, "--resume", "--save_params=" + cluster_params}));
  ASSERT_EQ(cluster.Wait(180), 0) << cluster.output();
  const std::map<int, double> got = StepLosses(cluster.output());
  ASSERT_EQ(got.size(), 2u) << cluster.output();
  for (int step : {3, 4}) {
    EXPECT_EQ(std::memcmp(&got.at(step), &losses[step - 1], sizeof(double)), 0) << "step " << step;
  }
  std::map<std::string, const runtime::NamedTensor*> by_name;
  for (const runtime::NamedTensor& t : expected) by_name[t.name] = &t;
  std::vector<std::set<std::string>> covered(c.dp);  // per replica, its member's experts
  for (int r = 0; r < 4; ++r) {
    auto tensors = runtime::ReadSafetensors(runtime::RankFile(cluster_params, r));
    ASSERT_TRUE(tensors.ok()) << tensors.status();
    for (const auto& [name, t] : *tensors) {
      ASSERT_TRUE(by_name.count(name) == 1) << name << " of rank " << r;
      EXPECT_TRUE(t.data == by_name[name]->data) << name << " of rank " << r << " differs";
      covered[r % c.dp].insert(name);
    }
  }
  ExpectReplicasCover(covered, c.ep, expected.size());
}

// A rank of replica 1 (rank 3: stage 1) SIGKILLed in step 4: the whole grid restarts from the
// checkpoint of step 2 (written by replica 0's ranks, one shard per stage) and ends bitwise as
// the one-process run without failure, every replica's parameters included.
TEST(Cluster, DataParallelKilledRankRestartsTheGridFromTheCheckpointBitwise) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.steps = 6;
  const std::string root = TempDir() + "/dp_restart_ckpt";
  const std::string out = ExpectDataParallelSameAsOneProcess(
      c, TempDir() + "/dp_restart.safetensors",
      {"--checkpoint_dir=" + root, "--checkpoint_every=2", "--restarts=1"},
      {"STAGEHAND_FAULTS=kill=3:4"});
  EXPECT_TRUE(std::regex_search(
      out, std::regex("launch: rank 3 \\(pid \\d+\\) was killed by signal 9; its last "
                      "action: [^;\\n]*; restarting the cluster "
                      "\\(restart 1 of 1\\) from the checkpoint of step 2")))
      << out;
  EXPECT_NE(out.find("running steps 3..6"), std::string::npos) << out;
  EXPECT_NE(out.find("launch: all 4 workers finished (after 1 restart)"), std::string::npos) << out;
  std::vector<std::string> skipped;
  auto info = runtime::FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->meta.step, 6);
  EXPECT_EQ(info->shards.size(), 2u);  // one per stage: the replicas share them
  for (pid_t pid : WorkerPids(out)) EXPECT_FALSE(Alive(pid)) << "worker pid " << pid;
}

// --zero=1 on 4 workers: each rank shards its stage's AdamW moments over its dp group. A rank
// of replica 1 is killed in step 3, so the grid resumes from the checkpoint of step 2, whose
// moments every replica gathered whole (replica 0 wrote them): losses and parameters stay
// bitwise those of the one-process --zero=1 run, and so those of --zero=0.
TEST(Cluster, ZeroOneOnFourWorkersResumesBitwiseTheOneProcessRun) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.zero = 1;
  c.microbatches = 4;
  c.steps = 4;
  const std::string root = TempDir() + "/zero_ckpt";
  const std::string out = ExpectDataParallelSameAsOneProcess(
      c, TempDir() + "/zero.safetensors",
      {"--checkpoint_dir=" + root, "--checkpoint_every=2", "--restarts=1"},
      {"STAGEHAND_FAULTS=kill=3:3"});
  EXPECT_NE(out.find("from the checkpoint of step 2"), std::string::npos) << out;
  EXPECT_NE(out.find("ZeRO-1: each replica keeps AdamW moments for 1/2 of every chunk"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("launch: all 4 workers finished (after 1 restart)"), std::string::npos) << out;
  // Each rank holds half its stage's moments.
  const auto held = OptimizerStateLines(out, "ZeRO-1 over 2 replicas");
  for (const auto& [rank, mib] : held) {
    EXPECT_NEAR(2 * mib.first, mib.second, 0.002) << "rank " << rank;
  }
  EXPECT_EQ(held.size(), 4u) << out;
  // --zero=0: the same ordered sums; only the clip scale's norm is grouped by owner, so the
  // losses agree within 1e-5 relative (bitwise in the one-process parity tests' configs).
  Config unsharded = c;
  unsharded.zero = 0;
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> params;
  OneProcess(unsharded, &losses, &params);
  std::map<int, double> got = StepLosses(out);
  ASSERT_EQ(got.size(), losses.size()) << out;
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_NEAR(got[i + 1], losses[i], 1e-5 * std::abs(losses[i])) << "step " << i + 1;
  }
  std::vector<std::string> skipped;
  auto info = runtime::FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->meta.step, 4);
}

// --zero=1 --ep=2 on 4 workers (ep 2 x edp 1): each rank keeps half its stage's dense moments
// (sharded over its dp group) and its member's two experts' whole. Losses, held-out losses and
// parameters are bitwise the one-process run of the same flags, and the checkpoint of step 2
// (dense moments gathered over the dp group, then whole experts over the ep group) resumes in
// one process and ends bitwise as the uninterrupted run.
TEST(Cluster, ZeroOneExpertParallelOnFourWorkersIsBitwiseTheOneProcessRunAndResumes) {
  Config c = ExpertParallelConfig();
  c.zero = 1;
  c.steps = 4;
  c.eval_every = 2;
  const std::string out =
      ExpectDataParallelSameAsOneProcess(c, TempDir() + "/zero_ep.safetensors", {});
  EXPECT_NE(out.find("ZeRO-1: each replica keeps AdamW moments for 1/2 of every chunk's dense "
                     "elements and all of its experts' (no other replica holds them)"),
            std::string::npos)
      << out;
  // Half the dense moments plus two of four experts' whole: half of what --zero=0 --ep=1 holds.
  const auto held = OptimizerStateLines(
      out, "experts split over ep 2, ZeRO-1: dense over 2 replicas, experts over edp 1");
  for (const auto& [rank, mib] : held) {
    EXPECT_NEAR(2 * mib.first, mib.second, 0.002) << "rank " << rank;
  }
  EXPECT_EQ(held.size(), 4u) << out;
  const std::string root = TempDir() + "/zero_ep_ckpt";
  Process cluster(LaunchArgs(c, 4, {"--checkpoint_dir=" + root, "--exit_after=2"}));
  ASSERT_EQ(cluster.Wait(180), 0) << cluster.output();
  const std::string params = TempDir() + "/zero_ep_resumed.safetensors";
  Process one(
      OneProcessLaunchArgs(c, {"--checkpoint_dir=" + root, "--resume", "--save_params=" + params}));
  ASSERT_EQ(one.Wait(180), 0) << one.output();
  EXPECT_NE(one.output().find("resumed from " + root + "/step_00000002 (step 2)"),
            std::string::npos)
      << one.output();
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> expected;
  OneProcess(c, &losses, &expected);
  ExpectFileHolds(params, expected);  // steps 3 and 4 moved them by the resumed moments
}

// --dp: a withheld receive on replica 1's stage 1 (rank 3) is reported per rank of both
// replicas, each under its own rank, while replica 0's ranks wait in their reductions.
TEST(Cluster, DataParallelHangIsReportedForEveryRankOfEveryReplica) {
  Config c;
  c.stages = 2;
  c.dp = 2;
  c.microbatches = 4;
  c.steps = 1000;
  Process launch(LaunchArgs(c, 4, {"--hang_timeout=3"}), {"STAGEHAND_FAULTS=withhold=3:2"});
  const int code = launch.Wait(60);
  const std::string& out = launch.output();
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("did not finish within --hang_timeout=3s"), std::string::npos) << out;
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_NE(out.find(absl::StrCat("rank ", rank, " (last action:")), std::string::npos) << out;
  }
  EXPECT_TRUE(std::regex_search(
      out, std::regex("rank 3 \\(last action:[^\\n]*\\n[^\\n]*stage 1: transfers: receiving "
                      "[^\\n]*receive withheld by the test hook")))
      << out;
  for (pid_t pid : WorkerPids(out)) EXPECT_FALSE(Alive(pid)) << pid;
}

TEST(Cluster, FlagsTheClusterCannotHonourAreRefusedWithTheReason) {
  Config c;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--restarts=1"}, "--restarts needs --checkpoint_dir"},
      {{"--restarts=-1", "--checkpoint_dir=" + TempDir()}, "--restarts=-1 must not be negative"},
      {{"--export=" + TempDir() + "/no_such_dir/x.safetensors"},
       "--export=" + TempDir() + "/no_such_dir/x.safetensors: directory"},
      {{"--link_gbps=10"}, "with --dp=1 there is none: drop them"},
      {{"--eval_batches=70000"},
       "--eval_batches=70000: a cluster evaluates at most 65536 held-out batches"},
      {{"--trace=" + TempDir() + "/no_such_dir/t.json"},
       "--trace=" + TempDir() + "/no_such_dir/t.json: directory"},
      {{"--checkpoint_every=2"}, "need --checkpoint_dir"},
      {{"--dp=2"}, "--nprocs must be --dp x --stages = 8"},
  };
  for (const auto& [flags, message] : cases) {
    Process launch(LaunchArgs(c, 2, flags));
    const int code = launch.Wait(20);
    EXPECT_EQ(code, 2) << flags[0] << "\n" << launch.output();
    EXPECT_NE(launch.output().find(message), std::string::npos) << flags[0] << "\n"
                                                                << launch.output();
    EXPECT_EQ(launch.output().find("launch: rank 0 pid"), std::string::npos)
        << "started workers for " << flags[0];
  }
}

}  // namespace
}  // namespace stagehand::tools
