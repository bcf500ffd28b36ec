#include "runtime/collectives/gloo_collective.h"

#include <exception>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gloo/allgather.h"
#include "gloo/allgatherv.h"
#include "gloo/alltoallv.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/transport/tcp/device.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// Runs a Gloo call, turning its exceptions into a status that names the operation and group.
template <typename Fn>
absl::Status Guarded(const GlooGroupOptions& group, const char* op, Fn&& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("gloo ", op, " in group '", group.name, "' (member ",
                                               group.member, " of ", group.size, "): ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCollective>> GlooCollective::Connect(
    gloo::rendezvous::Store& store, const GlooGroupOptions& options) {
  if (options.size < 1 || options.member < 0 || options.member >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat("gloo group '", options.name, "': member ",
                                                   options.member, " of ", options.size));
  }
  std::shared_ptr<gloo::rendezvous::Context> context;
  RETURN_IF_ERROR(Guarded(options, "connect", [&] {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.bind_host;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    context = std::make_shared<gloo::rendezvous::Context>(options.member, options.size);
    context->setTimeout(options.timeout);
    gloo::rendezvous::PrefixStore prefixed(options.name, store);
    context->connectFullMesh(prefixed, device);
  }));
  return std::unique_ptr<GlooCollective>(new GlooCollective(options, std::move(context)));
}

GlooCollective::~GlooCollective() = default;

absl::Status GlooCollective::ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard) {
  const int64_t n = static_cast<int64_t>(in.size());
  const int64_t mine = ShardLength(n, size(), member());
  if (static_cast<int64_t>(shard.size()) != mine) {
    return absl::InvalidArgumentError(
        absl::StrCat("reduce-scatter: member ", member(), " owns ", mine, " of ", n,
                     " elements, but its shard buffer has ", shard.size()));
  }
  // All-to-all of shards: member j receives every member's copy of shard j, in member order.
  std::vector<int64_t> send(size()), recv(size(), mine);
  for (int j = 0; j < size(); ++j) send[j] = ShardLength(n, size(), j);
  std::vector<float> copies(static_cast<size_t>(mine) * size());
  RETURN_IF_ERROR(AllToAllV(in, send, absl::MakeSpan(copies), recv));
  std::vector<absl::Span<const float>> parts;
  for (int m = 0; m < size(); ++m) {
    parts.push_back(absl::MakeConstSpan(copies.data() + m * mine, mine));
  }
  return SumInMemberOrder(parts, shard);
}

absl::Status GlooCollective::AllGather(absl::Span<const float> shard, absl::Span<float> out) {
  const int64_t n = static_cast<int64_t>(out.size());
  if (static_cast<int64_t>(shard.size()) != ShardLength(n, size(), member())) {
    return absl::InvalidArgumentError(absl::StrCat("all-gather: member ", member(), " passes ",
                                                   shard.size(), " elements, but owns ",
                                                   ShardLength(n, size(), member()), " of ", n));
  }
  std::vector<size_t> counts(size());
  for (int j = 0; j < size(); ++j) counts[j] = ShardLength(n, size(), j);
  if (size() == 1) {
    std::copy(shard.begin(), shard.end(), out.begin());
    return absl::OkStatus();
  }
  return Guarded(options_, "all-gather", [&] {
    gloo::AllgathervOptions opts(context_);
    opts.setInput<float>(const_cast<float*>(shard.data()), shard.size());
    opts.setOutput<float>(out.data(), counts);
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::allgatherv(opts);
  });
}

absl::Status GlooCollective::AllToAllV(absl::Span<const float> in,
                                       const std::vector<int64_t>& send_counts,
                                       absl::Span<float> out,
                                       const std::vector<int64_t>& recv_counts) {
  RETURN_IF_ERROR(CheckAllToAllCounts("send", send_counts, size(), in.size()));
  RETURN_IF_ERROR(CheckAllToAllCounts("receive", recv_counts, size(), out.size()));
  if (size() == 1) {
    std::copy(in.begin(), in.end(), out.begin());
    return absl::OkStatus();
  }
  return Guarded(options_, "all-to-all", [&] {
    gloo::AlltoallvOptions opts(context_);
    opts.setInput<float>(const_cast<float*>(in.data()), send_counts);
    opts.setOutput<float>(out.data(), recv_counts);
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::alltoallv(opts);
  });
}

absl::Status GlooCollective::AllGatherScalar(double value, std::vector<double>* values) {
  values->assign(size(), 0.0);
  if (size() == 1) {
    (*values)[0] = value;
    return absl::OkStatus();
  }
  return Guarded(options_, "all-gather", [&] {
    gloo::AllgatherOptions opts(context_);
    opts.setInput<double>(&value, 1);
    opts.setOutput<double>(values->data(), values->size());
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::allgather(opts);
  });
}

absl::StatusOr<std::unique_ptr<gloo::rendezvous::Store>> MakeFileStore(const std::string& folder) {
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("gloo file store: cannot create ", folder, ": ", error.message()));
  }
  return std::unique_ptr<gloo::rendezvous::Store>(new gloo::rendezvous::FileStore(folder));
}

}  // namespace stagehand::runtime
