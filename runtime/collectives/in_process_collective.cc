// InProcessGroup: a generation-counted barrier around each exchange of buffer pointers.
#include "runtime/collectives/in_process_collective.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

InProcessGroup::InProcessGroup(int size, double latency_us, double gbps)
    : size_(size), latency_us_(latency_us), gbps_(gbps) {
  absl::MutexLock lock(&mu_);
  slots_.assign(size, nullptr);
}

void InProcessGroup::Abort(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (aborted_.empty()) aborted_ = why.empty() ? "aborted" : why;
}

absl::Status InProcessGroup::Barrier() {
  if (!aborted_.empty()) return absl::AbortedError(aborted_);
  const int64_t generation = generation_;
  if (++arrived_ == size_) {
    arrived_ = 0;
    ++generation_;
    return absl::OkStatus();
  }
  auto passed = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return generation_ != generation || !aborted_.empty();
  };
  mu_.Await(absl::Condition(&passed));
  if (generation_ == generation) return absl::AbortedError(aborted_);
  return absl::OkStatus();
}

absl::Status InProcessGroup::Exchange(
    int member, const void* mine, int64_t bytes,
    const std::function<absl::Status(const std::vector<const void*>&)>& read) {
  if (member < 0 || member >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("member ", member, " of an in-process group of ", size_));
  }
  std::vector<const void*> all;
  {
    absl::MutexLock lock(&mu_);
    slots_[member] = mine;
    RETURN_IF_ERROR(Barrier());
    all = slots_;
  }
  const double link_us = latency_us_ + (gbps_ > 0 ? bytes * 8.0 / (gbps_ * 1e3) : 0.0);
  if (link_us > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(link_us));
  const absl::Status status = read(all);
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Barrier());
  return status;
}

absl::Status InProcessCollective::ReduceScatterSum(absl::Span<const float> in,
                                                   absl::Span<float> shard) {
  const int64_t n = static_cast<int64_t>(in.size());
  const int64_t begin = ShardBegin(n, size(), member_), length = ShardLength(n, size(), member_);
  if (static_cast<int64_t>(shard.size()) != length) {
    return absl::InvalidArgumentError(absl::StrCat("reduce-scatter: member ", member_,
                                                   " shard has ", shard.size(),
                                                   " elements, expected ", length));
  }
  struct Deposit {
    absl::Span<const float> in;
  } mine{in};
  const int64_t bytes = (n - length) * int64_t{sizeof(float)};  // the other members' shards
  return group_->Exchange(member_, &mine, bytes, [&](const std::vector<const void*>& all) {
    std::vector<absl::Span<const float>> parts;
    for (const void* p : all) {
      const absl::Span<const float> theirs = static_cast<const Deposit*>(p)->in;
      if (static_cast<int64_t>(theirs.size()) != n) {
        return absl::InvalidArgumentError(
            absl::StrCat("reduce-scatter: members pass ", theirs.size(), " and ", n, " elements"));
      }
      parts.push_back(theirs.subspan(begin, length));
    }
    return SumInMemberOrder(parts, shard);
  });
}

absl::Status InProcessCollective::AllGather(absl::Span<const float> shard, absl::Span<float> out) {
  const int64_t n = static_cast<int64_t>(out.size());
  if (static_cast<int64_t>(shard.size()) != ShardLength(n, size(), member_)) {
    return absl::InvalidArgumentError(absl::StrCat("all-gather: member ", member_, " shard has ",
                                                   shard.size(), " elements, expected ",
                                                   ShardLength(n, size(), member_)));
  }
  const int64_t bytes = static_cast<int64_t>(shard.size() * sizeof(float));
  return group_->Exchange(member_, &shard, bytes, [&](const std::vector<const void*>& all) {
    for (int m = 0; m < size(); ++m) {
      const absl::Span<const float> theirs = *static_cast<const absl::Span<const float>*>(all[m]);
      if (static_cast<int64_t>(theirs.size()) != ShardLength(n, size(), m)) {
        return absl::InvalidArgumentError(
            absl::StrCat("all-gather: member ", m, " passes a shard of ", theirs.size()));
      }
      std::copy(theirs.begin(), theirs.end(), out.begin() + ShardBegin(n, size(), m));
    }
    return absl::OkStatus();
  });
}

absl::Status InProcessCollective::AllToAllV(absl::Span<const float> in,
                                            const std::vector<int64_t>& send_counts,
                                            absl::Span<float> out,
                                            const std::vector<int64_t>& recv_counts) {
  if (static_cast<int>(send_counts.size()) != size() ||
      static_cast<int>(recv_counts.size()) != size()) {
    return absl::InvalidArgumentError("all-to-all: one count per member expected");
  }
  struct Deposit {
    absl::Span<const float> in;
    const std::vector<int64_t>* send_counts;
  } mine{in, &send_counts};
  return group_->Exchange(
      member_, &mine, static_cast<int64_t>(in.size() * sizeof(float)),
      [&](const std::vector<const void*>& all) {
        int64_t at = 0;
        for (int j = 0; j < size(); ++j) {
          const Deposit& theirs = *static_cast<const Deposit*>(all[j]);
          int64_t offset = 0;
          for (int k = 0; k < member_; ++k) offset += (*theirs.send_counts)[k];
          const int64_t count = (*theirs.send_counts)[member_];
          if (count != recv_counts[j] || at + count > static_cast<int64_t>(out.size()) ||
              offset + count > static_cast<int64_t>(theirs.in.size())) {
            return absl::InvalidArgumentError(absl::StrCat("all-to-all: member ", j, " sends ",
                                                           count, " elements to member ", member_,
                                                           ", which expects ", recv_counts[j]));
          }
          std::copy_n(theirs.in.begin() + offset, count, out.begin() + at);
          at += count;
        }
        return absl::OkStatus();
      });
}

absl::Status InProcessCollective::AllGatherScalar(double value, std::vector<double>* values) {
  return group_->Exchange(member_, &value, sizeof(double),
                          [&](const std::vector<const void*>& all) {
                            values->clear();
                            for (const void* p : all)
                              values->push_back(*static_cast<const double*>(p));
                            return absl::OkStatus();
                          });
}

InProcessGroupMembers MakeInProcessGroup(int size, double latency_us, double gbps) {
  InProcessGroupMembers out;
  out.group = std::make_unique<InProcessGroup>(size, latency_us, gbps);
  for (int m = 0; m < size; ++m) {
    out.members.push_back(std::make_unique<InProcessCollective>(out.group.get(), m));
  }
  return out;
}

}  // namespace stagehand::runtime
