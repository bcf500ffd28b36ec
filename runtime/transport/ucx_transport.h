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

// What happens to a message no posted receive matched (UCX keeps it in its unexpected queue:
// a message from a process without the launch's secret never matches, nor does one of an
// unknown transfer). With max_message_bytes > 0, a sweep on the progress thread takes every
// such message out of UCX's queue each sweep_interval_s:
//   larger than max_message_bytes: dropped unread (no payload is fetched);
//   would take the held bytes past max_held_bytes: dropped unread;
//   otherwise: fetched into a held buffer, where a Receive of its tag posted later finds it
//   (a member's payload may arrive before the receiver posts its receive); held longer than
//   claim_timeout_s without a Receive: dropped.
// So unmatched messages cost at most max_held_bytes (plus UCX's own eager buffers until the
// next sweep). Each drop is one line through on_drop (default: stderr) with the tag, the size
// and the reason. UCX's tag API does not say which endpoint sent a message, so the line can
// name no peer. Default (max_message_bytes 0): no sweep, UCX keeps them until the end.
struct UnexpectedMessageLimits {
  size_t max_message_bytes = 0;
  size_t max_held_bytes = 0;
  double claim_timeout_s = 300;
  double sweep_interval_s = 1.0;
  std::function<void(const std::string&)> on_drop;  // called on the progress thread
};

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

  // Sweeps unmatched messages from now on (UnexpectedMessageLimits). Any thread; the last
  // call wins.
  void SetUnexpectedMessageLimits(UnexpectedMessageLimits limits);
  // Bytes of unmatched messages held now, and messages dropped so far (any thread).
  int64_t held_bytes() const { return held_bytes_.load(); }
  int64_t dropped_messages() const { return dropped_.load(); }

  // Operations posted and not finished yet.
  int64_t pending() const { return pending_.load(); }

 private:
  struct Impl;
  struct Held;
  UcxTransport();
  void Loop();
  void Enqueue(std::function<void()> op);
  // On the progress thread: the unexpected-message sweep and its parts.
  void Sweep();
  void DropUnread(void* message, uint64_t wire_tag, size_t bytes, const std::string& why);
  void Drop(uint64_t wire_tag, size_t bytes, const std::string& why);
  bool ReceiveHeld(uint64_t wire_tag, void* data, size_t bytes, Done& done);

  std::unique_ptr<Impl> impl_;
  std::string address_;
  std::string tag_key_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::atomic<int64_t> pending_{0};
  std::atomic<int64_t> held_bytes_{0}, dropped_{0};
  std::thread thread_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRANSPORT_UCX_TRANSPORT_H_
