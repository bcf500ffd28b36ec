// The CPU collectives: Gloo (Debian's libgloo, TCP transport) behind the Collective interface.
//
// A group rendezvouses through a Gloo store: a shared-file-system folder (FileStore), or any
// gloo::rendezvous::Store such as one kept by the cluster's control plane. Gloo's TCP device
// listens only on `bind_host`, the address the cluster's traffic uses.
//
// Gloo reports failures by throwing; every call here turns them into an absl::Status naming
// the operation and the group, so a dead peer is an error the training loop can act on.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_GLOO_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_GLOO_COLLECTIVE_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/collectives/collective.h"

namespace gloo {
class Context;
namespace rendezvous {
class Store;
}  // namespace rendezvous
}  // namespace gloo

namespace stagehand::runtime {

struct GlooGroupOptions {
  std::string name = "world";  // keys in the store are prefixed by it: one store, many groups
  int member = 0;
  int size = 1;
  std::string bind_host = "127.0.0.1";
  std::chrono::milliseconds timeout{30000};
};

class GlooCollective : public Collective {
 public:
  // Joins the group: every member calls this with the same name and size. Blocks until all
  // members have connected (or the timeout passes). `store` must outlive the call only.
  static absl::StatusOr<std::unique_ptr<GlooCollective>> Connect(gloo::rendezvous::Store& store,
                                                                 const GlooGroupOptions& options);
  ~GlooCollective() override;

  int member() const override { return options_.member; }
  int size() const override { return options_.size; }
  absl::Status ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard) override;
  absl::Status AllGather(absl::Span<const float> shard, absl::Span<float> out) override;
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts) override;
  absl::Status AllGatherScalar(double value, std::vector<double>* values) override;

 private:
  GlooCollective(GlooGroupOptions options, std::shared_ptr<gloo::Context> context)
      : options_(std::move(options)), context_(std::move(context)) {}
  uint32_t NextTag() { return next_tag_++; }

  GlooGroupOptions options_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t next_tag_ = 1;
};

// A FileStore in `folder` (created if missing), for groups on a shared file system.
absl::StatusOr<std::unique_ptr<gloo::rendezvous::Store>> MakeFileStore(const std::string& folder);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_GLOO_COLLECTIVE_H_
