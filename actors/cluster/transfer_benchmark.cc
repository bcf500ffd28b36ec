// Activation transfer throughput between two workers, 1-64 MiB tensors: our data plane
// (TransferNotice over the CAF middleman on 127.0.0.1, receive posted on arrival into a
// PayloadPool buffer, as ClusterComm does; UCX tagged transfer on the UcxTransport lane)
// next to raw UCX (two bare UCP workers, pre-posted receives into buffers allocated before
// the clock starts, tight progress loops), both measured in this run, the median of
// kRounds timed rounds each, interleaved ours / raw, after warm-up rounds. Both move the
// same bytes: kIterations distinct source tensors into kIterations distinct buffers, as a
// pipeline sends distinct activations. The ratio is against that baseline; raw UCX sending
// one source buffer kIterations times (cache-hot below the last-level cache's size, as
// no real pipeline is) is printed beside it so that the difference stays visible. The received
// buffer goes back to the pool once the transfer is done: in a pipeline a stage's own sends give
// back as many buffers as it receives (ClusterComm), so this is the steady state, and the pool
// starts with as many buffers as transfers in flight, as raw UCX's receive buffers are allocated
// before its clock starts; the pool's reuse rate in the timed rounds is printed. The two workers
// are two actor systems and two UCP contexts in one process (shared memory between them as between
// two processes). Not a test.
#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/cluster/payload_pool.h"
#include "caf/io/all.hpp"
#include "runtime/transport/ucx_transport.h"

namespace stagehand::actors::cluster {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kIterations = 20;
constexpr int kRounds = 7;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Raw UCX: two bare UCP workers, each progressed by its own thread in a tight loop, with
// receives pre-posted into buffers allocated (and touched) before the clock starts.
class RawUcx {
 public:
  // `distinct_sources`: kIterations source buffers (as ours sends); else one, sent each time.
  RawUcx(size_t bytes, bool distinct_sources)
      : bytes_(bytes),
        src_(distinct_sources ? kIterations : 1, std::vector<char>(bytes, 1)),
        dst_(kIterations, std::vector<char>(bytes)) {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG;
    ucp_config_t* config;
    ucp_config_read(nullptr, nullptr, &config);
    for (int i = 0; i < 2; ++i) {
      ucp_init(&params, config, &ctx_[i]);
      ucp_worker_params_t wp{};
      wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
      wp.thread_mode = UCS_THREAD_MODE_SINGLE;
      ucp_worker_create(ctx_[i], &wp, &worker_[i]);
    }
    ucp_config_release(config);
    ucp_worker_get_address(worker_[1], &address_, &length_);
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address = address_;
    ucp_ep_create(worker_[0], &ep_params, &ep_);
    Round();  // wire-up
  }
  ~RawUcx() {
    ucp_worker_release_address(worker_[1], address_);
    ucp_request_param_t close{};
    close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    close.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t r = ucp_ep_close_nbx(ep_, &close);
    if (r != nullptr && UCS_PTR_IS_PTR(r)) {
      while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_[0]);
      ucp_request_free(r);
    }
    for (int i = 0; i < 2; ++i) {
      ucp_worker_destroy(worker_[i]);
      ucp_cleanup(ctx_[i]);
    }
  }
  // One timed round of kIterations transfers; returns GB/s.
  double Round() {
    const auto start = Clock::now();
    std::thread receiver([&] { Run(1, false); });
    Run(0, true);
    receiver.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return kIterations * double(bytes_) / seconds / 1e9;
  }

 private:
  void Run(int w, bool send) {
    std::vector<ucs_status_ptr_t> requests;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    p.datatype = ucp_dt_make_contig(1);
    for (int i = 0; i < kIterations; ++i) {
      requests.push_back(
          send ? ucp_tag_send_nbx(ep_, src_[i % src_.size()].data(), bytes_, i, &p)
               : ucp_tag_recv_nbx(worker_[w], dst_[i].data(), bytes_, i, ~uint64_t{0}, &p));
    }
    for (ucs_status_ptr_t r : requests) {
      if (r == nullptr || UCS_PTR_IS_ERR(r)) continue;
      while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_[w]);
      ucp_request_free(r);
    }
  }
  size_t bytes_;
  std::vector<std::vector<char>> src_;
  std::vector<std::vector<char>> dst_;
  ucp_context_h ctx_[2];
  ucp_worker_h worker_[2];
  ucp_address_t* address_ = nullptr;
  size_t length_ = 0;
  ucp_ep_h ep_ = nullptr;
};

// Completions, counted by the UCX threads and waited for without spinning (a spinning
// waiter would take a core from the transfer it measures).
class Counter {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++n_;
    cv_.notify_all();
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    n_ = 0;
  }
  void WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return n_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

struct SinkState {
  runtime::UcxTransport* transport = nullptr;
  PayloadPool* pool = nullptr;
  Counter* done = nullptr;
};

// The receiving worker's side: a notice arrives over CAF, the receive is posted into a
// pooled buffer (as ClusterComm does), completion is counted and the buffer goes back.
using notice_sink = caf::typed_actor<caf::reacts_to<TransferNotice>>;
notice_sink::behavior_type Sink(notice_sink::stateful_pointer<SinkState> self,
                                runtime::UcxTransport* t, PayloadPool* pool, Counter* done) {
  self->state.transport = t;
  self->state.pool = pool;
  self->state.done = done;
  return {[=](const TransferNotice& n) {
    auto payload = std::make_shared<std::vector<float>>(pool->Take(static_cast<size_t>(n.floats)));
    self->state.transport->Receive(n.tag, payload->data(), payload->size() * 4,
                                   [payload, pool, done = self->state.done](absl::Status s) {
                                     if (!s.ok())
                                       std::fprintf(stderr, "receive: %s\n",
                                                    std::string(s.message()).c_str());
                                     pool->Give(std::move(*payload));
                                     done->Add();
                                   });
  }};
}

int Main() {
  auto a = runtime::UcxTransport::Create();
  auto b = runtime::UcxTransport::Create();
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "UCX: %s\n",
                 std::string((a.ok() ? b.status() : a.status()).message()).c_str());
    return 1;
  }
  if (!(*a)->Connect(1, (*b)->address()).ok()) return 1;
  caf::actor_system_config cfg_a, cfg_b;
  ConfigureClusterSystem(cfg_a);
  ConfigureClusterSystem(cfg_b);
  cfg_a.set("scheduler.max-threads", size_t{2});  // as in tools/worker
  cfg_b.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys_a(cfg_a), sys_b(cfg_b);
  Counter done, sent;
  PayloadPool pool;
  notice_sink sink = sys_b.spawn(Sink, b->get(), &pool, &done);
  caf::expected<uint16_t> port = sys_b.middleman().publish(sink, 0, "127.0.0.1");
  if (!port) return 1;
  caf::expected<notice_sink> remote =
      sys_a.middleman().remote_actor<notice_sink>("127.0.0.1", *port);
  if (!remote) return 1;
  caf::scoped_actor self{sys_a};
  std::printf("%-10s %10s %14s %8s %12s %20s\n", "size", "ours GB/s", "raw UCX GB/s", "ratio",
              "pool reuse", "raw, 1 hot src GB/s");
  uint64_t tag = 1;
  for (size_t mib : {1, 2, 4, 8, 16, 32, 64}) {
    const size_t bytes = mib << 20;
    std::vector<std::shared_ptr<std::vector<float>>> payloads;
    for (int i = 0; i < kIterations; ++i)
      payloads.push_back(std::make_shared<std::vector<float>>(bytes / 4, 1.0f));
    auto round = [&] {
      done.Reset();
      sent.Reset();
      const auto start = Clock::now();
      for (int i = 0; i < kIterations; ++i) {
        TransferNotice n{
            1, 0, tag++, static_cast<int64_t>(bytes / 4), runtime::ActionKind::kForward, 0,
            1, 1, i};
        (*a)->Send(1, n.tag, payloads[i]->data(), bytes, [&sent](absl::Status) { sent.Add(); });
        self->send(*remote, n);
      }
      done.WaitFor(kIterations);
      sent.WaitFor(kIterations);
      return std::chrono::duration<double>(Clock::now() - start).count();
    };
    // The pool in its steady state (as raw UCX's receive buffers, allocated before the
    // clock starts): as many buffers as transfers can be in flight. A run reaches it after
    // its first steps; until then a receive that finds the pool empty allocates.
    for (int i = 0; i < kIterations; ++i) pool.Give(std::vector<float>(bytes / 4));
    round();  // warm-up (wire-up)
    RawUcx raw_ucx(bytes, /*distinct_sources=*/true);
    RawUcx raw_hot(bytes, /*distinct_sources=*/false);
    const int64_t taken0 = pool.taken(), reused0 = pool.reused();
    // Interleaved, so that both see the same load on the machine.
    std::vector<double> ours_rates, raw_rates, hot_rates;
    for (int r = 0; r < kRounds; ++r) {
      ours_rates.push_back(kIterations * double(bytes) / round() / 1e9);
      raw_rates.push_back(raw_ucx.Round());
      hot_rates.push_back(raw_hot.Round());
    }
    const double ours = Median(ours_rates), raw = Median(raw_rates), hot = Median(hot_rates);
    const double reuse =
        double(pool.reused() - reused0) / double(std::max<int64_t>(1, pool.taken() - taken0));
    std::printf("%4zu MiB   %10.2f %14.2f %7.0f%% %11.0f%% %20.2f\n", mib, ours, raw,
                100.0 * ours / raw, 100.0 * reuse, hot);
    std::fflush(stdout);
  }
  std::fflush(stdout);
  std::_Exit(0);  // skip tearing down two middlemen
}

}  // namespace
}  // namespace stagehand::actors::cluster

int main() { return stagehand::actors::cluster::Main(); }
