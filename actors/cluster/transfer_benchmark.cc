// Activation transfer throughput between two workers, 1-64 MiB tensors: our data plane
// (TransferNotice over the CAF middleman on 127.0.0.1, receive posted on arrival into a
// fresh payload vector, as ClusterComm does; UCX tagged transfer on the UcxTransport lane)
// next to raw UCX (two bare UCP workers, pre-posted receives, tight progress loops), both
// measured in this run. The two workers are two actor systems and two UCP contexts in one
// process (shared memory between them as between two processes). Not a test.
#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "caf/io/all.hpp"
#include "runtime/transport/ucx_transport.h"

namespace stagehand::actors::cluster {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kIterations = 20;

// Raw UCX: both workers progressed by their own thread; returns GB/s.
double RawUcx(size_t bytes) {
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  ucp_config_t* config;
  ucp_config_read(nullptr, nullptr, &config);
  ucp_context_h ctx[2];
  ucp_worker_h worker[2];
  for (int i = 0; i < 2; ++i) {
    ucp_init(&params, config, &ctx[i]);
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    ucp_worker_create(ctx[i], &wp, &worker[i]);
  }
  ucp_config_release(config);
  ucp_address_t* address;
  size_t length;
  ucp_worker_get_address(worker[1], &address, &length);
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  ep_params.address = address;
  ucp_ep_h ep;
  ucp_ep_create(worker[0], &ep_params, &ep);
  std::vector<char> src(bytes, 1);
  std::vector<std::vector<char>> dst(kIterations, std::vector<char>(bytes));
  auto run = [&](int w, bool send) {
    std::vector<ucs_status_ptr_t> requests;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    p.datatype = ucp_dt_make_contig(1);
    for (int i = 0; i < kIterations; ++i) {
      requests.push_back(send ? ucp_tag_send_nbx(ep, src.data(), bytes, i, &p)
                              : ucp_tag_recv_nbx(worker[w], dst[i].data(), bytes, i, ~uint64_t{0}, &p));
    }
    for (ucs_status_ptr_t r : requests) {
      if (r == nullptr || UCS_PTR_IS_ERR(r)) continue;
      while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker[w]);
      ucp_request_free(r);
    }
  };
  // Warm-up (wire-up), then the timed round.
  std::thread warm_recv([&] { run(1, false); });
  run(0, true);
  warm_recv.join();
  const auto start = Clock::now();
  std::thread receiver([&] { run(1, false); });
  run(0, true);
  receiver.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ucp_worker_release_address(worker[1], address);
  ucp_request_param_t close{};
  close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  close.flags = UCP_EP_CLOSE_FLAG_FORCE;
  ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &close);
  if (r != nullptr && UCS_PTR_IS_PTR(r)) {
    while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker[0]);
    ucp_request_free(r);
  }
  for (int i = 0; i < 2; ++i) {
    ucp_worker_destroy(worker[i]);
    ucp_cleanup(ctx[i]);
  }
  return kIterations * double(bytes) / seconds / 1e9;
}

struct SinkState {
  runtime::UcxTransport* transport = nullptr;
  std::atomic<int>* done = nullptr;
};

// The receiving worker's side: a notice arrives over CAF, the receive is posted into a
// fresh payload (as ClusterComm does), completion is counted.
caf::behavior Sink(caf::stateful_actor<SinkState>* self, runtime::UcxTransport* t, std::atomic<int>* done) {
  self->state.transport = t;
  self->state.done = done;
  return {[=](const TransferNotice& n) {
    auto payload = std::make_shared<std::vector<float>>(n.floats);
    self->state.transport->Receive(n.tag, payload->data(), payload->size() * 4,
                                   [payload, done = self->state.done](absl::Status s) {
                                     if (!s.ok()) std::fprintf(stderr, "receive: %s\n", std::string(s.message()).c_str());
                                     done->fetch_add(1);
                                   });
  }};
}

int Main() {
  auto a = runtime::UcxTransport::Create();
  auto b = runtime::UcxTransport::Create();
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "UCX: %s\n", std::string((a.ok() ? b.status() : a.status()).message()).c_str());
    return 1;
  }
  if (!(*a)->Connect(1, (*b)->address()).ok()) return 1;
  caf::actor_system_config cfg_a, cfg_b;
  ConfigureClusterSystem(cfg_a);
  ConfigureClusterSystem(cfg_b);
  caf::actor_system sys_a(cfg_a), sys_b(cfg_b);
  std::atomic<int> done{0};
  caf::actor sink = sys_b.spawn(Sink, b->get(), &done);
  caf::expected<uint16_t> port = sys_b.middleman().publish(sink, 0, "127.0.0.1");
  if (!port) return 1;
  caf::expected<caf::actor> remote = sys_a.middleman().remote_actor("127.0.0.1", *port);
  if (!remote) return 1;
  caf::scoped_actor self{sys_a};
  std::printf("%-10s %14s %14s %8s\n", "size", "ours GB/s", "raw UCX GB/s", "ratio");
  uint64_t tag = 1;
  for (size_t mib : {1, 2, 4, 8, 16, 32, 64}) {
    const size_t bytes = mib << 20;
    std::vector<std::shared_ptr<std::vector<float>>> payloads;
    for (int i = 0; i < kIterations; ++i) payloads.push_back(std::make_shared<std::vector<float>>(bytes / 4, 1.0f));
    auto round = [&] {
      done = 0;
      const auto start = Clock::now();
      for (int i = 0; i < kIterations; ++i) {
        TransferNotice n{1, 0, tag++, static_cast<int64_t>(bytes / 4), 0, 0, 1, 1, i};
        (*a)->Send(1, n.tag, payloads[i]->data(), bytes, nullptr);
        self->send(*remote, n);
      }
      while (done.load() < kIterations || (*a)->pending() > 0) std::this_thread::yield();
      return std::chrono::duration<double>(Clock::now() - start).count();
    };
    round();  // warm-up
    const double ours = kIterations * double(bytes) / round() / 1e9;
    const double raw = RawUcx(bytes);
    std::printf("%4zu MiB   %14.2f %14.2f %7.0f%%\n", mib, ours, raw, 100.0 * ours / raw);
    std::fflush(stdout);
  }
  std::fflush(stdout);
  std::_Exit(0);  // skip tearing down two middlemen
}

}  // namespace
}  // namespace stagehand::actors::cluster

int main() { return stagehand::actors::cluster::Main(); }
