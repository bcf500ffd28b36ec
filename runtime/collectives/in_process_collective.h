// The Collective interface for the replicas of one process (`--dp=D` as actors): the D members
// are threads (each replica's reduction lane), meeting in a shared InProcessGroup. The sums
// are SumInMemberOrder's, so a one-process run and a Gloo run of the same grid agree bit for
// bit. Not a transport and not an algorithm of its own: members read each other's buffers.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_COLLECTIVE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "runtime/collectives/collective.h"

namespace stagehand::runtime {

// Where the members of one group meet. Every member must call the same collectives in the
// same order (as with Gloo or NCCL); each call blocks until every member made it.
class InProcessGroup {
 public:
  // `latency_us` and `gbps` (0: unlimited) model the link of one process's replicas as
  // --link_latency_us / --link_gbps model its transfers: every exchange then takes that
  // latency plus its bytes at that bandwidth, on the calling member's thread.
  explicit InProcessGroup(int size, double latency_us = 0, double gbps = 0);
  int size() const { return size_; }

  // Wakes every waiting member and fails every later call with Aborted(`why`): a replica
  // that failed its step must not leave its peers waiting forever.
  void Abort(const std::string& why);

  // Every member deposits `mine`; once all have, `read(all)` runs on each member with every
  // member's deposit (by member); no member returns before every `read` finished, so
  // deposits stay valid while they are read.
  // `bytes`: what this member moves in the exchange (for the modelled bandwidth).
  absl::Status Exchange(int member, const void* mine, int64_t bytes,
                        const std::function<absl::Status(const std::vector<const void*>&)>& read);

 private:
  absl::Status Barrier() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int size_;
  const double latency_us_, gbps_;
  absl::Mutex mu_;
  std::vector<const void*> slots_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::string aborted_ ABSL_GUARDED_BY(mu_);
};

class InProcessCollective : public Collective {
 public:
  // `group` is shared by the members and must outlive them.
  InProcessCollective(InProcessGroup* group, int member) : group_(group), member_(member) {}
  int member() const override { return member_; }
  int size() const override { return group_->size(); }
  absl::Status ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard) override;
  absl::Status AllGather(absl::Span<const float> shard, absl::Span<float> out) override;
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts) override;
  absl::Status AllGatherScalar(double value, std::vector<double>* values) override;

 private:
  InProcessGroup* group_;
  int member_;
};

// A group of `size` members and one collective per member: what a one-process `--dp=D`
// run holds per pipeline stage.
struct InProcessGroupMembers {
  std::unique_ptr<InProcessGroup> group;
  std::vector<std::unique_ptr<InProcessCollective>> members;
};
InProcessGroupMembers MakeInProcessGroup(int size, double latency_us = 0, double gbps = 0);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_COLLECTIVE_H_
