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
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "runtime/trace/chrome_json.h"
#include "tools/cluster/rank_env.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

ABSL_FLAG(int, nprocs, 0, "start this many worker processes (one or more stages each) on this host");
ABSL_FLAG(std::string, hostfile, "", "start workers over ssh on the hosts listed here (host [slots=N] per line)");
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
  int fd = -1;           // merged stdout+stderr
  std::string partial;   // output after the last newline
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
    return absl::UnavailableError(absl::StrCat("cannot bind ", address, ": ", std::strerror(errno)));
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

// What the launcher learns from the workers' output during one attempt.
struct AttemptLog {
  std::map<int, std::string> last_action;  // rank -> as the coordinator reported it
  bool cluster_up = false;                 // every worker joined and connected
  int64_t checkpoint = -1;                 // the newest complete checkpoint's step
};

// Forwards complete lines of `c`'s output with a rank prefix; remembers reported actions,
// the start of the run and complete checkpoints (rank 0's coordinator reports both).
void Forward(Child& c, const char* data, size_t n, AttemptLog& log) {
  std::map<int, std::string>& last_action = log.last_action;
  c.partial.append(data, n);
  size_t start = 0, nl;
  while ((nl = c.partial.find('\n', start)) != std::string::npos) {
    std::string line = c.partial.substr(start, nl - start);
    std::printf("[rank %d] %s\n", c.rank, line.c_str());
    long long step = 0;
    if (c.rank == 0 && line.find("workers joined and connected") != std::string::npos) log.cluster_up = true;
    if (c.rank == 0 && std::sscanf(line.c_str(), "checkpoint: step %lld in ", &step) == 1) log.checkpoint = step;
    // The coordinator names a lost rank and what it last did.
    size_t lost = line.find("rank ");
    size_t action = line.find("last action: ");
    if (lost != std::string::npos && action != std::string::npos && line.find("was lost") != std::string::npos) {
      int r = std::atoi(line.c_str() + lost + 5);
      last_action[r] = line.substr(action + 13);
    } else if (action != std::string::npos && line.find("sent no heartbeat") != std::string::npos) {
      last_action[std::atoi(line.c_str() + lost + 5)] = line.substr(action + 13);
    }
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
  int code = 0;          // 0: every rank finished; 1: a rank failed; 130: interrupted
  AttemptLog log;
  std::string failure;   // "rank 2 (pid ...) was killed by signal 9; its last action: ..."
};

// One start of the whole cluster, watched to its end.
AttemptResult RunAttempt(const ClusterLaunchOptions& o, int restart, const std::vector<std::string>& extra_args) {
  AttemptResult result;
  const int N = o.nprocs;
  bool remote = false;
  for (const std::string& h : o.hosts) remote |= !IsLocal(h);
  absl::StatusOr<std::string> token = NewJoinToken();
  absl::StatusOr<int> port = FreePort(o.bind);
  if (!token.ok() || !port.ok()) {
    result.code = 1;
    result.failure = std::string((token.ok() ? port.status() : token.status()).message());
    return result;
  }
  // Where the workers find rank 0: this host's bind address, or rank 0's remote host.
  std::string rank0_host = o.bind;
  if (!o.hosts.empty() && !IsLocal(o.hosts[0])) {
    rank0_host = o.hosts[0];
  } else if (rank0_host == "0.0.0.0") {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    rank0_host = remote ? std::string(name) : "127.0.0.1";
  }

  std::vector<Child> children(N);
  for (int r = 0; r < N; ++r) {
    std::vector<std::pair<std::string, std::string>> env = {
        {kRankVar, std::to_string(r)},
        {kWorldSizeVar, std::to_string(N)},
        {kCoordinatorVar, absl::StrCat(rank0_host, ":", *port)},
        {kTokenVar, *token},
        {kBindVar, o.bind},
        {"STAGEHAND_RESTART", std::to_string(restart)}};
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
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
      result.code = 1;
      result.failure = absl::StrCat("pipe: ", std::strerror(errno));
      return result;
    }
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
    children[r] = Child{r, pid, pipefd[0]};
    std::printf("launch: rank %d pid %d%s\n", r, pid, host.empty() ? "" : (" on " + host).c_str());
  }
  std::fflush(stdout);

  AttemptLog& log = result.log;
  int failed_rank = -1;
  std::chrono::steady_clock::time_point kill_at{};
  bool killing = false;
  auto all_done = [&] {
    for (const Child& c : children) {
      if (!c.exited || c.fd >= 0) return false;
    }
    return true;
  };
  while (!all_done()) {
    std::vector<pollfd> fds;
    std::vector<int> who;
    for (int r = 0; r < N; ++r) {
      if (children[r].fd >= 0) {
        fds.push_back({children[r].fd, POLLIN, 0});
        who.push_back(r);
      }
    }
    if (!fds.empty()) {
      poll(fds.data(), fds.size(), 100);
    } else {
      usleep(50000);
    }
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
    for (Child& c : children) {
      if (c.exited) continue;
      if (waitpid(c.pid, &c.status, WNOHANG) != c.pid) continue;
      c.exited = true;
      if (!Failed(c.status)) continue;
      // The first rank killed by a signal is the dead one; otherwise the first to fail.
      if (failed_rank < 0 || (WIFSIGNALED(c.status) && !WIFSIGNALED(children[failed_rank].status))) {
        failed_rank = c.rank;
      }
      if (!killing) {
        killing = true;
        kill_at = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1e3));
      }
    }
    if (g_interrupted && !killing) {
      std::fprintf(stderr, "launch: interrupted; stopping the workers\n");
      for (Child& c : children) {
        if (!c.exited) kill(c.pid, SIGTERM);
      }
      killing = true;
      kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1e3));
    }
    if (killing && std::chrono::steady_clock::now() >= kill_at) {
      for (Child& c : children) {
        if (c.exited) continue;
        std::fprintf(stderr, "launch: rank %d (pid %d) did not stop within %.0f s; killing it\n", c.rank,
                     c.pid, o.grace_s);
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &c.status, 0);
        c.exited = true;
      }
    }
  }
  if (failed_rank < 0) {
    result.code = g_interrupted ? 130 : 0;
    return result;
  }
  const Child& dead = children[failed_rank];
  auto it = log.last_action.find(failed_rank);
  result.code = 1;
  result.failure = absl::StrCat("rank ", failed_rank, " (pid ", dead.pid, ") ", Describe(dead.status),
                                "; its last action: ",
                                it == log.last_action.end() ? "not reported (see its output above)" : it->second);
  return result;
}

// Removes the ranks' trace files of an earlier attempt or run, so that only files this
// attempt writes can be merged.
void RemoveRankTraces(const ClusterLaunchOptions& o) {
  if (o.trace.empty()) return;
  for (int r = 0; r < o.nprocs; ++r) unlink(RankTraceFile(o.trace, r).c_str());
}

// Every rank's trace file, merged into o.trace.
absl::Status MergeRankTraces(const ClusterLaunchOptions& o) {
  std::vector<runtime::trace::Trace> traces;
  for (int r = 0; r < o.nprocs; ++r) {
    absl::StatusOr<runtime::trace::Trace> t = runtime::trace::ReadChromeJsonFile(RankTraceFile(o.trace, r));
    if (!t.ok()) return t.status();
    traces.push_back(std::move(*t));
  }
  absl::StatusOr<runtime::trace::Trace> merged = runtime::trace::MergeTraces(traces);
  if (!merged.ok()) return merged.status();
  if (absl::Status s = runtime::trace::WriteChromeJsonFile(*merged, o.trace); !s.ok()) return s;
  std::printf("trace: %zu events from %d ranks written to %s\n", merged->spans.size(), o.nprocs, o.trace.c_str());
  return absl::OkStatus();
}

}  // namespace

int RunCluster(const ClusterLaunchOptions& o) {
  const int N = o.nprocs;
  if (N < 1) {
    std::fprintf(stderr, "launch: error: --nprocs must be at least 1\n");
    return 2;
  }
  if (access(o.worker.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "launch: error: worker binary '%s' not found (build //tools:worker or pass --worker)\n",
                 o.worker.c_str());
    return 2;
  }
  bool remote = false;
  for (const std::string& h : o.hosts) remote |= !IsLocal(h);
  if (remote && (o.bind == "127.0.0.1" || o.bind == "localhost")) {
    std::fprintf(stderr, "launch: error: workers on other hosts cannot reach a coordinator bound to %s: "
                         "pass --bind=<this host's address> (or 0.0.0.0)\n", o.bind.c_str());
    return 2;
  }
  if (o.restarts < 0) {
    std::fprintf(stderr, "launch: error: --restarts=%d must not be negative\n", o.restarts);
    return 2;
  }
  if (o.restarts > 0 && o.checkpoint_dir.empty()) {
    std::fprintf(stderr, "launch: error: --restarts needs --checkpoint_dir (the cluster restarts from its "
                         "last complete checkpoint)\n");
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  int64_t checkpoint = -1;  // the newest complete checkpoint this launch wrote
  for (int restart = 0;; ++restart) {
    std::vector<std::string> extra;
    if (restart > 0) {
      // From this launch's newest checkpoint; without one, from where the first attempt
      // started (the newest with --resume, else step 0).
      extra.push_back(absl::StrCat("--resume_step=", checkpoint >= 0 ? checkpoint : (o.resume ? -1 : 0)));
    }
    RemoveRankTraces(o);
    AttemptResult r = RunAttempt(o, restart, extra);
    if (r.log.checkpoint >= 0) checkpoint = r.log.checkpoint;
    if (r.code == 0) {
      std::printf("launch: all %d workers finished%s\n", N,
                  restart > 0 ? absl::StrCat(" (after ", restart, restart == 1 ? " restart)" : " restarts)").c_str() : "");
      if (!o.trace.empty()) {
        if (absl::Status s = MergeRankTraces(o); !s.ok()) {
          std::fprintf(stderr, "launch: error: merging the ranks' traces into %s: %s\n", o.trace.c_str(),
                       std::string(s.message()).c_str());
          return 1;
        }
      }
      std::fflush(stdout);
      return 0;
    }
    if (r.code == 130) return 130;
    if (restart < o.restarts && r.log.cluster_up && !g_interrupted) {
      std::fprintf(stderr, "launch: %s; restarting the cluster (restart %d of %d) from %s\n", r.failure.c_str(),
                   restart + 1, o.restarts,
                   checkpoint >= 0 ? absl::StrCat("the checkpoint of step ", checkpoint, " in ", o.checkpoint_dir).c_str()
                   : o.resume       ? "the checkpoint it resumed from"
                                    : "step 0 (no complete checkpoint yet)");
      std::fflush(stderr);
      continue;
    }
    if (restart < o.restarts && !r.log.cluster_up) {
      std::fprintf(stderr, "launch: not restarting: the cluster failed before every worker had joined\n");
    }
    std::fprintf(stderr, "launch: error: %s%s\n", r.failure.c_str(),
                 o.restarts > 0 ? absl::StrCat(" (restarts used: ", restart, " of ", o.restarts, ")").c_str() : "");
    std::fflush(stderr);
    return 1;
  }
}

bool ClusterRequested() {
  return absl::GetFlag(FLAGS_nprocs) != 0 || !absl::GetFlag(FLAGS_hostfile).empty();
}

int LaunchClusterFromFlags(const char* argv0, const TrainConfig& train) {
  ClusterLaunchOptions o;
  o.nprocs = absl::GetFlag(FLAGS_nprocs);
  if (absl::Status s = ValidateProcessCount(o.nprocs, train.stages); !s.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  o.bind = absl::GetFlag(FLAGS_bind);
  if (const std::string path = absl::GetFlag(FLAGS_hostfile); !path.empty()) {
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "launch: error: cannot read --hostfile=%s\n", path.c_str());
      return 2;
    }
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<std::vector<std::string>> slots = ParseHostfile(text.str());
    if (!slots.ok()) {
      std::fprintf(stderr, "launch: error: %s\n", std::string(slots.status().message()).c_str());
      return 2;
    }
    if (o.nprocs == 0) o.nprocs = static_cast<int>(slots->size());
    if (o.nprocs > static_cast<int>(slots->size())) {
      std::fprintf(stderr, "launch: error: --nprocs=%d but the hostfile has %zu slots\n", o.nprocs, slots->size());
      return 2;
    }
    o.hosts.assign(slots->begin(), slots->begin() + o.nprocs);
  }
  o.worker = absl::GetFlag(FLAGS_worker);
  if (o.worker.empty()) {
    char self[4096] = {0};
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string dir = n > 0 ? std::string(self, n) : std::string(argv0);
    o.worker = dir.substr(0, dir.rfind('/') + 1) + "worker";
  }
  if (absl::Status s = train.schedule.empty() ? CheckWorkerKnowsPlanner(o.worker, train.planner)
                                              : absl::OkStatus();
      !s.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  // Every shared training flag (tools/train_flags.h), forwarded with its value here.
  o.worker_args = TrainFlagArgs();
  o.restarts = absl::GetFlag(FLAGS_restarts);
  o.checkpoint_dir = train.checkpoint_dir;
  o.resume = train.resume;
  o.trace = train.trace;
  return RunCluster(o);
}

}  // namespace stagehand::tools
