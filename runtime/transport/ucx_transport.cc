// UcxTransport: the UCP calls, all made on the progress thread.
#include "runtime/transport/ucx_transport.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdlib>
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

struct UcxTransport::Impl {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::map<int, ucp_ep_h> endpoints;  // touched only by the progress thread
};

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
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    p.datatype = ucp_dt_make_contig(1);
    p.cb.send = OnSend;
    p.user_data = op;
    ucs_status_ptr_t r = ucp_tag_send_nbx(it->second, data, bytes, tag, &p);
    if (UCS_PTR_IS_ERR(r)) Complete(op, UCX_ERROR("ucp_tag_send_nbx", UCS_PTR_STATUS(r)));
  });
}

void UcxTransport::Receive(uint64_t tag, void* data, size_t bytes, Done done) {
  pending_.fetch_add(1);
  tag = WireTag(tag);
  Enqueue([this, tag, data, bytes, done = std::move(done)]() mutable {
    Op* op = new Op{std::move(done), bytes, &pending_};
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                     UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    p.datatype = ucp_dt_make_contig(1);
    p.cb.recv = OnReceive;
    p.user_data = op;
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

}  // namespace stagehand::runtime
