// UcxTransport: the UCP calls, all made on the progress thread.
#include "runtime/transport/ucx_transport.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

absl::Status UcxError(const char* call, ucs_status_t status, const char* file, int line) {
  return absl::UnavailableError(
      absl::StrCat(call, " failed: ", ucs_status_string(status), " (", file, ":", line,
                   "; hint: check UCX_TLS and that peers share a transport)"));
}
#define UCX_ERROR(call, status) UcxError(call, status, __FILE__, __LINE__)

// One posted operation; lives until its completion callback.
struct Op {
  UcxTransport::Done done;
  size_t expected_bytes = 0;
  std::atomic<int64_t>* pending = nullptr;
};

void Complete(Op* op, absl::Status status) {
  op->pending->fetch_sub(1);
  if (op->done) op->done(std::move(status));
  delete op;
}

void OnSend(void* request, ucs_status_t status, void* user_data) {
  Op* op = static_cast<Op*>(user_data);
  Complete(op, status == UCS_OK ? absl::OkStatus() : UCX_ERROR("ucp_tag_send_nbx", status));
  ucp_request_free(request);
}

void OnReceive(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
               void* user_data) {
  Op* op = static_cast<Op*>(user_data);
  absl::Status s;
  if (status != UCS_OK) {
    s = UCX_ERROR("ucp_tag_recv_nbx", status);
  } else if (info->length != op->expected_bytes) {
    s = absl::DataLossError(
        absl::StrCat("received ", info->length, " bytes, expected ", op->expected_bytes));
  }
  Complete(op, std::move(s));
  ucp_request_free(request);
}

}  // namespace

// An unmatched message taken out of UCX's queue by the sweep: fetched into `data`, then
// handed to the Receive of its tag (`claim`) or dropped.
struct UcxTransport::Held {
  std::vector<char> data;
  std::chrono::steady_clock::time_point since;
  bool fetched = false;
  absl::Status status;  // of the fetch
  // A Receive that found it while the fetch was in flight:
  bool claimed = false;
  void* target = nullptr;
  size_t target_bytes = 0;
  Done claim;
};

struct UcxTransport::Impl {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::map<int, ucp_ep_h> endpoints;  // touched only by the progress thread
  // The unexpected-message sweep; touched only by the progress thread.
  UnexpectedMessageLimits limits;
  std::chrono::steady_clock::time_point last_sweep;
  std::map<uint64_t, std::deque<std::shared_ptr<Held>>> held;  // wire tag -> oldest first
};

namespace {

// Hands a fetched held message to its Receive: the bytes, or why not.
absl::Status DeliverHeld(const std::vector<char>& data, const absl::Status& fetched, void* target,
                         size_t bytes) {
  if (!fetched.ok()) return fetched;
  if (data.size() != bytes) {
    return absl::DataLossError(absl::StrCat("received ", data.size(), " bytes, expected ", bytes));
  }
  if (bytes > 0) std::memcpy(target, data.data(), bytes);
  return absl::OkStatus();
}

// A sweep's fetch of one unmatched message, or a drop of one unread.
struct SweepOp {
  std::function<void(ucs_status_t)> done;
};

void OnSwept(void* request, ucs_status_t status, const ucp_tag_recv_info_t*, void* user_data) {
  SweepOp* op = static_cast<SweepOp*>(user_data);
  op->done(status);
  delete op;
  ucp_request_free(request);
}

// The parameters of a request for contiguous bytes that always completes through `callback`
// with `user_data` (never in place): a send, or a receive.
ucp_request_param_t ByteRequest(void* user_data) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                   UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  p.datatype = ucp_dt_make_contig(1);
  p.user_data = user_data;
  return p;
}
ucp_request_param_t ByteRequest(ucp_send_nbx_callback_t callback, void* user_data) {
  ucp_request_param_t p = ByteRequest(user_data);
  p.cb.send = callback;
  return p;
}
ucp_request_param_t ByteRequest(ucp_tag_recv_nbx_callback_t callback, void* user_data) {
  ucp_request_param_t p = ByteRequest(user_data);
  p.cb.recv = callback;
  return p;
}

}  // namespace

UcxTransport::UcxTransport() : impl_(std::make_unique<Impl>()) {}

absl::StatusOr<std::unique_ptr<UcxTransport>> UcxTransport::Create(const std::string& net_devices,
                                                                   const std::string& tag_key) {
  std::unique_ptr<UcxTransport> t(new UcxTransport());
  t->tag_key_ = tag_key;
  ucp_config_t* config = nullptr;
  if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
    return UCX_ERROR("ucp_config_read", s);
  }
  if (!net_devices.empty() && std::getenv("UCX_NET_DEVICES") == nullptr) {
    if (ucs_status_t s = ucp_config_modify(config, "NET_DEVICES", net_devices.c_str());
        s != UCS_OK) {
      ucp_config_release(config);
      return UCX_ERROR(("ucp_config_modify NET_DEVICES=" + net_devices).c_str(), s);
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  ucs_status_t s = ucp_init(&params, config, &t->impl_->context);
  ucp_config_release(config);
  if (s != UCS_OK) return UCX_ERROR("ucp_init", s);
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the progress thread touches it
  if (s = ucp_worker_create(t->impl_->context, &wp, &t->impl_->worker); s != UCS_OK) {
    return UCX_ERROR("ucp_worker_create", s);
  }
  ucp_address_t* address = nullptr;
  size_t length = 0;
  if (s = ucp_worker_get_address(t->impl_->worker, &address, &length); s != UCS_OK) {
    return UCX_ERROR("ucp_worker_get_address", s);
  }
  t->address_.assign(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(t->impl_->worker, address);
  t->thread_ = std::thread([p = t.get()] { p->Loop(); });
  return t;
}

UcxTransport::~UcxTransport() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  if (impl_->worker != nullptr) {
    for (auto& [peer, ep] : impl_->endpoints) {
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      p.flags = UCP_EP_CLOSE_FLAG_FORCE;
      ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &p);
      if (r != nullptr && UCS_PTR_IS_PTR(r)) {
        for (int i = 0; i < 1000 && ucp_request_check_status(r) == UCS_INPROGRESS; ++i) {
          ucp_worker_progress(impl_->worker);
        }
        ucp_request_free(r);
      }
    }
    ucp_worker_destroy(impl_->worker);
  }
  if (impl_->context != nullptr) ucp_cleanup(impl_->context);
}

uint64_t UcxTransport::WireTag(uint64_t tag) const {
  if (tag_key_.empty()) return tag;
  unsigned char message[24] = {'s', 't', 'a', 'g', 'e', 'h', 'a', 'n',
                               'd', ' ', 'u', 'c', 'x', ' ', 't', 'a'};
  for (int i = 0; i < 8; ++i) message[16 + i] = static_cast<unsigned char>(tag >> (8 * i));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), tag_key_.data(), static_cast<int>(tag_key_.size()), message, sizeof(message),
       mac, &length);
  uint64_t wire = 0;
  for (int i = 0; i < 8; ++i) wire |= uint64_t{mac[i]} << (8 * i);
  return wire;
}

void UcxTransport::Enqueue(std::function<void()> op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(op));
  }
  cv_.notify_all();
}

absl::Status UcxTransport::Connect(int peer, const std::string& address) {
  auto result = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = result->get_future();
  Enqueue([this, peer, address, result] {
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep.address = reinterpret_cast<const ucp_address_t*>(address.data());
    ucp_ep_h handle = nullptr;
    ucs_status_t s = ucp_ep_create(impl_->worker, &ep, &handle);
    if (s != UCS_OK) {
      result->set_value(UCX_ERROR("ucp_ep_create", s));
      return;
    }
    impl_->endpoints[peer] = handle;
    result->set_value(absl::OkStatus());
  });
  return future.get();
}

void UcxTransport::Send(int peer, uint64_t tag, const void* data, size_t bytes, Done done) {
  pending_.fetch_add(1);
  tag = WireTag(tag);
  Enqueue([this, peer, tag, data, bytes, done = std::move(done)]() mutable {
    Op* op = new Op{std::move(done), bytes, &pending_};
    auto it = impl_->endpoints.find(peer);
    if (it == impl_->endpoints.end()) {
      Complete(op, absl::FailedPreconditionError(absl::StrCat("no UCX endpoint to peer ", peer)));
      return;
    }
    const ucp_request_param_t p = ByteRequest(OnSend, op);
    ucs_status_ptr_t r = ucp_tag_send_nbx(it->second, data, bytes, tag, &p);
    if (UCS_PTR_IS_ERR(r)) Complete(op, UCX_ERROR("ucp_tag_send_nbx", UCS_PTR_STATUS(r)));
  });
}

void UcxTransport::Receive(uint64_t tag, void* data, size_t bytes, Done done) {
  pending_.fetch_add(1);
  tag = WireTag(tag);
  Enqueue([this, tag, data, bytes, done = std::move(done)]() mutable {
    Op* op = new Op{std::move(done), bytes, &pending_};
    const ucp_request_param_t p = ByteRequest(OnReceive, op);
    if (ReceiveHeld(tag, data, bytes, op->done)) {
      delete op;
      return;
    }
    ucs_status_ptr_t r = ucp_tag_recv_nbx(impl_->worker, data, bytes, tag, ~uint64_t{0}, &p);
    if (UCS_PTR_IS_ERR(r)) Complete(op, UCX_ERROR("ucp_tag_recv_nbx", UCS_PTR_STATUS(r)));
  });
}

// Runs posted operations and progresses the worker: spinning while transfers are in
// flight (yielding, then napping, when nothing moves), sleeping on the queue otherwise.
void UcxTransport::Loop() {
  int idle = 0;
  while (true) {
    std::deque<std::function<void()>> ops;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty() && pending_.load() == 0 && !stopping_) {
        cv_.wait_for(lock, std::chrono::milliseconds(1));
      }
      if (stopping_) return;
      ops.swap(queue_);
    }
    for (auto& op : ops) op();
    unsigned progressed = 0;
    while (unsigned n = ucp_worker_progress(impl_->worker)) progressed += n;
    Sweep();
    if (progressed > 0 || !ops.empty()) {
      idle = 0;
    } else if (pending_.load() > 0) {
      if (++idle < 2000) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
  }
}

void UcxTransport::SetUnexpectedMessageLimits(UnexpectedMessageLimits limits) {
  Enqueue([this, limits = std::move(limits)]() mutable { impl_->limits = std::move(limits); });
}

void UcxTransport::Drop(uint64_t wire_tag, size_t bytes, const std::string& why) {
  dropped_.fetch_add(1);
  const std::string line = absl::StrCat("UCX: dropped an unmatched message (wire tag ",
                                        absl::Hex(wire_tag, absl::kZeroPad16), ", ", bytes,
                                        " bytes; UCX does not say who sent it): ", why);
  if (impl_->limits.on_drop) {
    impl_->limits.on_drop(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

// Receives the message into one byte: UCX ends it as truncated without fetching the rest.
void UcxTransport::DropUnread(void* message, uint64_t wire_tag, size_t bytes,
                              const std::string& why) {
  static char sink[1];
  Drop(wire_tag, bytes, why);
  pending_.fetch_add(1);
  SweepOp* op = new SweepOp{[this](ucs_status_t) { pending_.fetch_sub(1); }};
  const ucp_request_param_t p = ByteRequest(OnSwept, op);
  ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(impl_->worker, sink, std::min<size_t>(bytes, 1),
                                            static_cast<ucp_tag_message_h>(message), &p);
  if (UCS_PTR_IS_ERR(r)) {
    delete op;
    pending_.fetch_sub(1);
  }
}

// A Receive of `wire_tag` served from the held messages, if one is held: true if so (then
// `done` has run or will run when the fetch completes).
bool UcxTransport::ReceiveHeld(uint64_t wire_tag, void* data, size_t bytes, Done& done) {
  auto it = impl_->held.find(wire_tag);
  if (it == impl_->held.end()) return false;
  std::shared_ptr<Held> h = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) impl_->held.erase(it);
  held_bytes_.fetch_sub(static_cast<int64_t>(h->data.size()));
  if (h->fetched) {
    pending_.fetch_sub(1);
    if (done) done(DeliverHeld(h->data, h->status, data, bytes));
    return true;
  }
  h->claimed = true;
  h->target = data;
  h->target_bytes = bytes;
  h->claim = std::move(done);
  return true;
}

// Every sweep_interval_s: takes each unmatched message out of UCX's queue (drops it unread or
// fetches it to hold), then drops held ones older than claim_timeout_s.
void UcxTransport::Sweep() {
  const UnexpectedMessageLimits& limits = impl_->limits;
  const auto now = std::chrono::steady_clock::now();
  if (limits.max_message_bytes == 0 ||
      now - impl_->last_sweep < std::chrono::duration<double>(limits.sweep_interval_s)) {
    return;
  }
  impl_->last_sweep = now;
  ucp_tag_recv_info_t info{};
  while (ucp_tag_message_h m = ucp_tag_probe_nb(impl_->worker, 0, 0, 1, &info)) {
    if (info.length > limits.max_message_bytes) {
      DropUnread(m, info.sender_tag, info.length,
                 absl::StrCat("larger than any message of this run (", limits.max_message_bytes,
                              " bytes)"));
      continue;
    }
    if (held_bytes_.load() + static_cast<int64_t>(info.length) >
        static_cast<int64_t>(limits.max_held_bytes)) {
      DropUnread(m, info.sender_tag, info.length,
                 absl::StrCat("unmatched messages already hold ", held_bytes_.load(),
                              " bytes (the limit is ", limits.max_held_bytes, ")"));
      continue;
    }
    auto h = std::make_shared<Held>();
    h->data.resize(info.length);
    h->since = now;
    held_bytes_.fetch_add(static_cast<int64_t>(info.length));
    impl_->held[info.sender_tag].push_back(h);
    pending_.fetch_add(1);  // the fetch: keeps the loop progressing
    SweepOp* op = new SweepOp{[this, h](ucs_status_t s) {
      h->fetched = true;
      if (s != UCS_OK) h->status = UCX_ERROR("ucp_tag_msg_recv_nbx", s);
      pending_.fetch_sub(h->claimed ? 2 : 1);  // the fetch, and the Receive that claimed it
      if (h->claimed && h->claim) {
        h->claim(DeliverHeld(h->data, h->status, h->target, h->target_bytes));
      }
    }};
    const ucp_request_param_t p = ByteRequest(OnSwept, op);
    ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(impl_->worker, h->data.data(), h->data.size(), m, &p);
    if (UCS_PTR_IS_ERR(r)) {
      delete op;
      h->fetched = true;
      h->status = UCX_ERROR("ucp_tag_msg_recv_nbx", UCS_PTR_STATUS(r));
      pending_.fetch_sub(1);
    }
  }
  for (auto it = impl_->held.begin(); it != impl_->held.end();) {
    std::deque<std::shared_ptr<Held>>& queue = it->second;
    while (!queue.empty() && queue.front()->fetched &&
           now - queue.front()->since > std::chrono::duration<double>(limits.claim_timeout_s)) {
      held_bytes_.fetch_sub(static_cast<int64_t>(queue.front()->data.size()));
      Drop(it->first, queue.front()->data.size(),
           absl::StrCat("no receive claimed it within ", limits.claim_timeout_s, " s"));
      queue.pop_front();
    }
    it = queue.empty() ? impl_->held.erase(it) : std::next(it);
  }
}

}  // namespace stagehand::runtime
