// Starting, watching and stopping worker processes.
#include "tools/cluster/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "runtime/cluster/placement.h"
#include "runtime/io/user_path.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/util/cores.h"
#include "runtime/util/status_macros.h"
#include "tools/cluster/attempt_log.h"
#include "tools/cluster/rank_env.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

ABSL_FLAG(int, nprocs, 0,
          "start this many worker processes (one or more stages each) on this host");
ABSL_FLAG(std::string, hostfile, "",
          "start workers over ssh on the hosts listed here (host [slots=N] per line)");
ABSL_FLAG(std::string, bind, "127.0.0.1", "address the coordinator (rank 0) listens on");
ABSL_FLAG(std::string, worker, "", "path of the tools/worker binary (default: beside launch)");
ABSL_FLAG(int, restarts, 0,
          "when a worker dies, restart the whole cluster from the last complete checkpoint up to "
          "this many times (needs --checkpoint_dir; see --checkpoint_every)");

namespace stagehand::tools {
namespace {

volatile sig_atomic_t g_interrupted = 0;

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int fd = -1;          // merged stdout+stderr
  std::string partial;  // output after the last newline
  bool exited = false;
  int status = 0;
};

absl::StatusOr<int> FreePort(const std::string& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", address, ": ", std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

bool IsLocal(const std::string& host) {
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  return host.empty() || host == "localhost" || host == "127.0.0.1" || host == name;
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("exited with status ", WEXITSTATUS(status));
}

bool Failed(int status) { return WIFSIGNALED(status) || WEXITSTATUS(status) != 0; }

std::string ShellQuote(const std::string& s) {
  return "'" + absl::StrReplaceAll(s, {{"'", "'\\''"}}) + "'";
}

// Forwards complete lines of `c`'s output with a rank prefix, except rank 0's status lines,
// which go to `log` (attempt_log.h) instead.
void Forward(Child& c, const char* data, size_t n, AttemptLog& log) {
  c.partial.append(data, n);
  size_t start = 0, nl;
  while ((nl = c.partial.find('\n', start)) != std::string::npos) {
    const std::string line = c.partial.substr(start, nl - start);
    if (!log.Observe(c.rank, line)) std::printf("[rank %d] %s\n", c.rank, line.c_str());
    start = nl + 1;
  }
  c.partial.erase(0, start);
  std::fflush(stdout);
}

}  // namespace

absl::StatusOr<std::string> NewJoinToken() {
  std::ifstream random("/dev/urandom", std::ios::binary);
  unsigned char bytes[16];
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) {
    return absl::UnavailableError("cannot read /dev/urandom for the join token");
  }
  std::string hex;
  for (unsigned char b : bytes) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return hex;
}

std::vector<std::pair<std::string, std::string>> ForwardedEnvironment(char** variables) {
  std::vector<std::pair<std::string, std::string>> forwarded;
  for (char** entry = variables; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    const std::string_view name = text.substr(0, equals);
    for (const std::string_view prefix : {"UCX_", "OPENBLAS_", "OMP_", "GOMP_"}) {
      if (name.substr(0, prefix.size()) == prefix) {
        forwarded.emplace_back(std::string(name), std::string(text.substr(equals + 1)));
        break;
      }
    }
  }
  std::sort(forwarded.begin(), forwarded.end());
  return forwarded;
}

std::vector<std::string> SshCommand(const std::string& ssh, const std::string& host,
                                    const std::vector<std::pair<std::string, std::string>>& env,
                                    const std::vector<std::string>& argv) {
  std::vector<std::string> words = {"env"};
  for (const auto& [k, v] : env) words.push_back(ShellQuote(k + "=" + v));
  for (const std::string& a : argv) words.push_back(ShellQuote(a));
  // -tt is deliberately not used: without a tty, closing ssh does not signal the remote
  // side, so the worker also stops on its own when it loses the coordinator.
  return {ssh, "-o", "BatchMode=yes", host, absl::StrJoin(words, " ")};
}

namespace {

struct AttemptResult {
  int code = 0;  // 0: every rank finished; 1: a rank failed; 130: interrupted
  AttemptLog log;
  std::string failure;  // "rank 2 (pid ...) was killed by signal 9; its last action: ..."
};

// Where the workers find rank 0: this host's bind address, or rank 0's remote host.
std::string Rank0Host(const ClusterLaunchOptions& o) {
  bool remote = false;
  for (const std::string& h : o.hosts) remote |= !IsLocal(h);
  if (!o.hosts.empty() && !IsLocal(o.hosts[0])) return o.hosts[0];
  if (o.bind != "0.0.0.0") return o.bind;
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  return remote ? std::string(name) : "127.0.0.1";
}

// Forks rank `r`'s worker (over ssh for a remote host) with its output on a pipe.
absl::StatusOr<Child> StartWorker(const ClusterLaunchOptions& o, int r,
                                  const std::vector<std::pair<std::string, std::string>>& env,
                                  const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv = {o.worker};
  argv.insert(argv.end(), o.worker_args.begin(), o.worker_args.end());
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const std::string host = o.hosts.empty() ? "" : o.hosts[r];
  if (!IsLocal(host)) {
    std::vector<std::pair<std::string, std::string>> remote_env = ForwardedEnvironment(environ);
    remote_env.insert(remote_env.end(), env.begin(), env.end());
    argv = SshCommand(o.ssh, host, remote_env, argv);
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphans if the launcher itself dies
    if (getppid() != parent) _exit(1);
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);
  std::printf("launch: rank %d pid %d%s\n", r, pid, host.empty() ? "" : (" on " + host).c_str());
  return Child{r, pid, pipefd[0]};
}

// OpenMP threads for each worker on this host when the user set no OMP_NUM_THREADS (the cores
// this process may run on split between them, runtime::SplitCores), said once per launch.
int LocalOmpThreads(const ClusterLaunchOptions& o, int restart) {
  int local = 0;
  for (int r = 0; r < o.nprocs; ++r) local += IsLocal(o.hosts.empty() ? "" : o.hosts[r]);
  const int cores = runtime::AllowedCores();
  const int threads = runtime::SplitCores(local, cores, std::getenv("OMP_NUM_THREADS"));
  if (threads > 0 && restart == 0) {
    std::printf(
        "launch: %d workers share this host's %d cores: OMP_NUM_THREADS=%d each (set "
        "OMP_NUM_THREADS to choose)\n",
        local, cores, threads);
  }
  return threads;
}

// Every rank's worker, with its rank, the coordinator's address and a fresh join token.
absl::StatusOr<std::vector<Child>> StartWorkers(const ClusterLaunchOptions& o, int restart,
                                                const std::vector<std::string>& extra_args) {
  ASSIGN_OR_RETURN(std::string token, NewJoinToken());
  ASSIGN_OR_RETURN(int port, FreePort(o.bind));
  const std::string rank0_host = Rank0Host(o);
  const int omp_threads = LocalOmpThreads(o, restart);
  const std::vector<int> local_ranks = LocalRanks(o.hosts, o.nprocs);
  std::vector<Child> children;
  for (int r = 0; r < o.nprocs; ++r) {
    std::vector<std::pair<std::string, std::string>> env = {
        {kRankVar, std::to_string(r)},
        {kLocalRankVar, std::to_string(local_ranks[r])},
        {kWorldSizeVar, std::to_string(o.nprocs)},
        {kCoordinatorVar, absl::StrCat(rank0_host, ":", port)},
        {kTokenVar, token},
        {kBindVar, o.bind},
        {"STAGEHAND_RESTART", std::to_string(restart)}};
    if (omp_threads > 0 && IsLocal(o.hosts.empty() ? "" : o.hosts[r])) {
      env.emplace_back("OMP_NUM_THREADS", std::to_string(omp_threads));
    }
    ASSIGN_OR_RETURN(Child child, StartWorker(o, r, env, extra_args));
    children.push_back(child);
  }
  std::fflush(stdout);
  return children;
}

// Reads whatever the children wrote (waiting up to 100 ms), forwarding it line by line.
void ReadOutput(std::vector<Child>& children, AttemptLog& log) {
  std::vector<pollfd> fds;
  std::vector<int> who;
  for (size_t r = 0; r < children.size(); ++r) {
    if (children[r].fd >= 0) {
      fds.push_back({children[r].fd, POLLIN, 0});
      who.push_back(static_cast<int>(r));
    }
  }
  if (fds.empty()) {
    usleep(50000);
    return;
  }
  poll(fds.data(), fds.size(), 100);
  for (size_t i = 0; i < fds.size(); ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    Child& c = children[who[i]];
    char buf[65536];
    ssize_t n = read(c.fd, buf, sizeof(buf));
    if (n > 0) {
      Forward(c, buf, n, log);
    } else if (n == 0 || errno != EINTR) {
      if (!c.partial.empty()) Forward(c, "\n", 1, log);
      close(c.fd);
      c.fd = -1;
    }
  }
}

// Watches the children to their end: after the first failure (or an interrupt) the others
// get o.grace_s to leave, then are killed. Returns the failed rank, -1 when none failed.
int Watch(const ClusterLaunchOptions& o, std::vector<Child>& children, AttemptLog& log) {
  int failed_rank = -1;
  std::chrono::steady_clock::time_point kill_at{};
  bool killing = false;
  auto start_killing = [&] {
    killing = true;
    kill_at = std::chrono::steady_clock::now() +
              std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1e3));
  };
  auto all_done = [&] {
    for (const Child& c : children) {
      if (!c.exited || c.fd >= 0) return false;
    }
    return true;
  };
  while (!all_done()) {
    ReadOutput(children, log);
    for (Child& c : children) {
      if (c.exited || waitpid(c.pid, &c.status, WNOHANG) != c.pid) continue;
      c.exited = true;
      if (!Failed(c.status)) continue;
      // The first rank killed by a signal is the dead one; otherwise the first to fail.
      if (failed_rank < 0 ||
          (WIFSIGNALED(c.status) && !WIFSIGNALED(children[failed_rank].status))) {
        failed_rank = c.rank;
      }
      if (!killing) start_killing();
    }
    if (g_interrupted && !killing) {
      std::fprintf(stderr, "launch: interrupted; stopping the workers\n");
      for (Child& c : children) {
        if (!c.exited) kill(c.pid, SIGTERM);
      }
      start_killing();
    }
    if (killing && std::chrono::steady_clock::now() >= kill_at) {
      for (Child& c : children) {
        if (c.exited) continue;
        std::fprintf(stderr, "launch: rank %d (pid %d) did not stop within %.0f s; killing it\n",
                     c.rank, c.pid, o.grace_s);
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &c.status, 0);
        c.exited = true;
      }
    }
  }
  return failed_rank;
}

// One start of the whole cluster, watched to its end.
AttemptResult RunAttempt(const ClusterLaunchOptions& o, int restart,
                         const std::vector<std::string>& extra_args) {
  AttemptResult result;
  absl::StatusOr<std::vector<Child>> children = StartWorkers(o, restart, extra_args);
  if (!children.ok()) {
    result.code = 1;
    result.failure = std::string(children.status().message());
    return result;
  }
  const int failed_rank = Watch(o, *children, result.log);
  if (failed_rank < 0) {
    result.code = g_interrupted ? 130 : 0;
    return result;
  }
  const Child& dead = (*children)[failed_rank];
  auto it = result.log.last_action.find(failed_rank);
  result.code = 1;
  result.failure = absl::StrCat(
      "rank ", failed_rank, " (pid ", dead.pid, ") ", Describe(dead.status), "; its last action: ",
      it == result.log.last_action.end() ? "not reported (see its output above)" : it->second);
  return result;
}

// Removes the ranks' trace files of an earlier attempt or run, so that only files this
// attempt writes can be merged.
void RemoveRankTraces(const ClusterLaunchOptions& o) {
  if (o.trace.empty()) return;
  for (int r = 0; r < o.nprocs; ++r) unlink(RankTraceFile(o.trace, r).c_str());
}

// The ranks that write trace files.
std::vector<int> TraceRanks(const ClusterLaunchOptions& o) {
  if (!o.trace_ranks.empty()) return o.trace_ranks;
  std::vector<int> ranks;
  for (int r = 0; r < o.nprocs; ++r) ranks.push_back(r);
  return ranks;
}

// Every tracing rank's file, merged into o.trace.
absl::Status MergeRankTraces(const ClusterLaunchOptions& o) {
  std::vector<runtime::trace::Trace> traces;
  const std::vector<int> ranks = TraceRanks(o);
  for (int r : ranks) {
    absl::StatusOr<runtime::trace::Trace> t =
        runtime::trace::ReadChromeJsonFile(RankTraceFile(o.trace, r));
    if (!t.ok()) return t.status();
    traces.push_back(std::move(*t));
  }
  absl::StatusOr<runtime::trace::Trace> merged = runtime::trace::MergeTraces(traces);
  if (!merged.ok()) return merged.status();
  if (absl::Status s = runtime::trace::WriteChromeJsonFile(*merged, o.trace); !s.ok()) return s;
  std::printf("trace: %zu events from %zu ranks written to %s\n", merged->spans.size(),
              ranks.size(), o.trace.c_str());
  return absl::OkStatus();
}

}  // namespace

namespace {

// The options a cluster cannot start with: the reason, or "" when they are fine.
std::string RefuseOptions(const ClusterLaunchOptions& o) {
  if (o.nprocs < 1) return "--nprocs must be at least 1";
  if (access(o.worker.c_str(), X_OK) != 0) {
    return absl::StrCat("worker binary '", o.worker,
                        "' not found (build //tools:worker or pass --worker)");
  }
  bool remote = false;
  for (const std::string& h : o.hosts) remote |= !IsLocal(h);
  if (remote && (o.bind == "127.0.0.1" || o.bind == "localhost")) {
    return absl::StrCat("workers on other hosts cannot reach a coordinator bound to ", o.bind,
                        ": pass --bind=<this host's address> (or 0.0.0.0)");
  }
  if (o.restarts < 0) return absl::StrCat("--restarts=", o.restarts, " must not be negative");
  if (o.restarts > 0 && o.checkpoint_dir.empty()) {
    return "--restarts needs --checkpoint_dir (the cluster restarts from its last complete "
           "checkpoint)";
  }
  return "";
}

// After every rank finished: the merged trace.
int Succeeded(const ClusterLaunchOptions& o, int restart) {
  std::printf(
      "launch: all %d workers finished%s\n", o.nprocs,
      restart > 0
          ? absl::StrCat(" (after ", restart, restart == 1 ? " restart)" : " restarts)").c_str()
          : "");
  if (!o.trace.empty()) {
    if (absl::Status s = MergeRankTraces(o); !s.ok()) {
      std::fprintf(stderr, "launch: error: merging the ranks' traces into %s: %s\n",
                   o.trace.c_str(), std::string(s.message()).c_str());
      return 1;
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int RunCluster(const ClusterLaunchOptions& o) {
  if (const std::string refused = RefuseOptions(o); !refused.empty()) {
    std::fprintf(stderr, "launch: error: %s\n", refused.c_str());
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  int64_t checkpoint = -1;  // the newest complete checkpoint this launch wrote
  std::vector<std::string> extra;
  for (int restart = 0;; ++restart) {
    RemoveRankTraces(o);
    AttemptResult r = RunAttempt(o, restart, extra);
    if (r.log.checkpoint >= 0) checkpoint = r.log.checkpoint;
    if (r.code == 0) return Succeeded(o, restart);
    if (r.code == 130) return 130;
    const RestartDecision d = DecideRestart(
        {restart, o.restarts, r.log.cluster_up, g_interrupted != 0, checkpoint, o.resume},
        o.checkpoint_dir);
    if (d.restart) {
      std::fprintf(stderr, "launch: %s; restarting the cluster (restart %d of %d) from %s\n",
                   r.failure.c_str(), restart + 1, o.restarts, d.from.c_str());
      std::fflush(stderr);
      extra = {absl::StrCat("--resume_step=", d.resume_step)};
      continue;
    }
    if (!d.why_not.empty()) std::fprintf(stderr, "launch: not restarting: %s\n", d.why_not.c_str());
    std::fprintf(stderr, "launch: error: %s%s\n", r.failure.c_str(),
                 o.restarts > 0
                     ? absl::StrCat(" (restarts used: ", restart, " of ", o.restarts, ")").c_str()
                     : "");
    std::fflush(stderr);
    return 1;
  }
}

bool ClusterRequested() {
  return absl::GetFlag(FLAGS_nprocs) != 0 || !absl::GetFlag(FLAGS_hostfile).empty();
}

namespace {

// --hostfile's slots, the first o.nprocs of them (all when --nprocs is 0) as o.hosts.
absl::Status ReadHostfile(const std::string& path, ClusterLaunchOptions& o) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read --hostfile=", path));
  std::stringstream text;
  text << in.rdbuf();
  ASSIGN_OR_RETURN(std::vector<std::string> slots, ParseHostfile(text.str()));
  if (o.nprocs == 0) o.nprocs = static_cast<int>(slots.size());
  if (o.nprocs > static_cast<int>(slots.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nprocs=", o.nprocs, " but the hostfile has ", slots.size(), " slots"));
  }
  o.hosts.assign(slots.begin(), slots.begin() + o.nprocs);
  return absl::OkStatus();
}

// tools/worker beside this binary, unless --worker names one.
std::string WorkerBinary(const char* argv0) {
  if (std::string worker = absl::GetFlag(FLAGS_worker); !worker.empty()) {
    return runtime::ResolveUserPath(worker);
  }
  char self[4096] = {0};
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string dir = n > 0 ? std::string(self, n) : std::string(argv0);
  return dir.substr(0, dir.rfind('/') + 1) + "worker";
}

}  // namespace

absl::StatusOr<ClusterLaunchOptions> ClusterOptionsFromFlags(const char* argv0,
                                                             const TrainConfig& train) {
  ClusterLaunchOptions o;
  o.nprocs = absl::GetFlag(FLAGS_nprocs);
  RETURN_IF_ERROR(ValidateProcessCount(o.nprocs, train.stages, train.dp));
  o.bind = absl::GetFlag(FLAGS_bind);
  if (const std::string path = absl::GetFlag(FLAGS_hostfile); !path.empty()) {
    // --dp without --nprocs: the first dp x stages slots (an error if there are fewer).
    if (o.nprocs == 0 && train.dp > 1) o.nprocs = train.dp * train.stages;
    RETURN_IF_ERROR(ReadHostfile(runtime::ResolveUserPath(path), o));
  }
  o.worker = WorkerBinary(argv0);
  // A planner by name must be one the worker binary has (a --schedule table needs none).
  if (train.schedule.empty()) RETURN_IF_ERROR(CheckWorkerKnowsPlanner(o.worker, train.planner));
  // Every shared training flag (tools/train_flags.h), forwarded with its value here.
  o.worker_args = TrainFlagArgs();
  o.restarts = absl::GetFlag(FLAGS_restarts);
  o.checkpoint_dir = train.checkpoint_dir;
  o.resume = train.resume;
  o.trace = train.trace;
  if (train.dp > 1 && !o.trace.empty()) {
    ASSIGN_OR_RETURN(runtime::ClusterLayout layout,
                     runtime::ClusterLayout::Create(train.stages, o.nprocs, train.dp));
    o.trace_ranks = layout.StageRanks(0);
  }
  return o;
}

}  // namespace stagehand::tools
