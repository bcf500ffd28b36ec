// UcxTransport: one UCX worker driven by its own progress thread (the transfer lane):
// tagged sends to peers and tagged receives into caller-owned buffers, with completion
// callbacks. Pure C++ over UCP; not a control plane: addresses, tags and sizes are agreed
// elsewhere (the cluster's CAF messages), and nothing here knows about stages or tensors.
#ifndef STAGEHAND_RUNTIME_TRANSPORT_UCX_TRANSPORT_H_
#define STAGEHAND_RUNTIME_TRANSPORT_UCX_TRANSPORT_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime {

class UcxTransport {
 public:
  // Called on the progress thread when an operation finished (ok) or failed.
  using Done = std::function<void(absl::Status)>;

  // A UCP context (tag matching; transports from UCX_TLS as usual) and one worker. With
  // `net_devices` (UCX_NET_DEVICES syntax, e.g. "lo" or "eth0") UCX's network transports use,
  // and listen on, those interfaces only; empty, or UCX_NET_DEVICES set in the environment
  // (the user's choice wins): UCX's default, every interface.
  // With `tag_key` (the launch's secret), every tag goes on the wire as the first 8 bytes of
  // HMAC-SHA256(tag_key, label || tag): a process without the key cannot name a tag that
  // matches a posted receive, so its messages never land in a buffer (UCX's tag API does not
  // say who sent an unmatched message, so they are not attributed either). Every peer must
  // use the same key. Empty: tags go out as given.
  static absl::StatusOr<std::unique_ptr<UcxTransport>> Create(const std::string& net_devices = "",
                                                              const std::string& tag_key = "");
  ~UcxTransport();  // stops the thread; pending operations are cancelled
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  // This worker's address, to hand to peers (opaque bytes).
  const std::string& address() const { return address_; }
  // Creates the endpoint to `peer` (any id the caller chooses) from its address. Blocks
  // until the progress thread has created it.
  absl::Status Connect(int peer, const std::string& address);

  // Sends `bytes` bytes at `data` to `peer` under `tag`. `data` must stay valid until
  // `done` runs (capture its owner in `done`).
  void Send(int peer, uint64_t tag, const void* data, size_t bytes, Done done);
  // Receives exactly `bytes` bytes under `tag` (full 64-bit match) into `data`. A message
  // of another size completes with an error.
  void Receive(uint64_t tag, void* data, size_t bytes, Done done);

  // The tag as it goes on the wire (see Create).
  uint64_t WireTag(uint64_t tag) const;

  // Operations posted and not finished yet.
  int64_t pending() const { return pending_.load(); }

 private:
  struct Impl;
  UcxTransport();
  void Loop();
  void Enqueue(std::function<void()> op);

  std::unique_ptr<Impl> impl_;
  std::string address_;
  std::string tag_key_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::atomic<int64_t> pending_{0};
  std::thread thread_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRANSPORT_UCX_TRANSPORT_H_
