// StageWork: the compute a stage's lane runs for its chunks (F, I, W, fused B, and the
// optimizer step's phases), behind one interface so the actor runtime can drive the real
// model, or synthetic work of known duration (tests, overhead benchmarks).
// Not thread-safe and not an executor: exactly one lane thread calls a StageWork.
#ifndef STAGEHAND_RUNTIME_TRAIN_STAGE_WORK_H_
#define STAGEHAND_RUNTIME_TRAIN_STAGE_WORK_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/cluster/fault_plan.h"
#include "runtime/collectives/collective.h"
#include "runtime/data/text_corpus.h"
#include "runtime/sub_step_graph.h"
#include "runtime/train/expert_layout.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/optimizer.h"
#include "runtime/train/training.h"
#include "runtime/train/zero_shard.h"

namespace stagehand::runtime {

class StageWork {
 public:
  virtual ~StageWork() = default;
  // Called before a step's first action, with the step's M (a batch-size ramp-up changes it
  // from step to step: runtime/train/step_specs.h).
  virtual void BeginStep(int64_t step, int num_microbatches) = 0;
  // F(chunk, mb): `input` is null for the first chunk. Fills `output` for a chunk that
  // feeds another chunk, or `loss` for the last chunk.
  virtual absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                               double* loss) = 0;
  // B(chunk, mb): `grad` is null for the last chunk; fills `input_grad` unless chunk 0.
  virtual absl::Status BackwardInput(int chunk, int mb, const Payload* grad,
                                     Payload* input_grad) = 0;
  virtual absl::Status BackwardWeights(int chunk, int mb) = 0;
  // Fused I then W (the real model's runs them layer by layer: GptChunk::Backward).
  virtual absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) = 0;

  // Optimizer phases, in order: tied gradients are gathered and summed across chunks,
  // then per-tensor squared norms (tied copies skipped) are combined in global order into
  // the clip scale, then the update runs.
  // Gradients of tied tensors held here (GatherTiedGradients), and their sums over every
  // holder to set (SumsForHolders of SumTiedGradients).
  virtual TiedGradientMap TiedGradients() = 0;
  virtual void SetTiedGradients(const TiedGradientMap& sums) = 0;
  // Squared norms of this stage's gradients per chunk, tensor by tensor: chunk -> values.
  virtual std::map<int, std::vector<double>> SquaredNorms() = 0;
  virtual void ApplyOptimizer(double clip_scale, int step) = 0;
  // The names of the tensors SquaredNorms reports, in its order: chunk -> names (reports).
  virtual std::map<int, std::vector<std::string>> GradientNames() = 0;
  // Zeroes every gradient of the step instead of applying it (a rerun, a skipped batch).
  virtual void DiscardGradients() = 0;
  // Seconds spent building batches (the data-loading timer) since the last call; called on
  // the lane after Forward.
  virtual double TakeDataSeconds() { return 0.0; }

  // Data parallelism (REDUCE_GRAD). Each held chunk's gradient size in floats, for the
  // bucket plan (runtime/train/grad_buckets.h); empty for a stage without data parallelism.
  virtual std::map<int, int64_t> GradientFloats() const { return {}; }
  // Sums `bucket` over the stage's data-parallel group, every replica ending with the ordered
  // sum (runtime/collectives/collective.h). Runs on the stage's reduction lane, concurrently
  // with compute on the stage's other chunks and, per layer, with the rest of the backward of
  // `bucket.chunk` (which writes none of the bucket's elements: GradientParts).
  virtual absl::Status ReduceGradients(const GradBucket& bucket) { return absl::OkStatus(); }
  // Per-layer gradient readiness (GradReductionStart::kAsLayersComplete). The parts of each
  // held chunk's weight-gradient pass and the element ranges each completes; empty: whole
  // actions only.
  virtual GradPartLayout GradientParts() const { return {}; }
  // Called on the lane during the step's last W (or B) of a chunk, after each of its parts
  // (GradientParts' order) with the count finished so far; the action's end still comes as
  // usual. Null: none. Set before the first step.
  using GradientProgress = std::function<void(int chunk, int parts_done)>;
  virtual void SetGradientProgress(GradientProgress progress) {}
  // The loss stage, after its last REDUCE_GRAD: every replica's microbatch losses, replica by
  // replica (this replica's `losses` in its place), so that every replica's driver checks and
  // reports the same D x M losses. Leaves `losses` alone without data parallelism.
  virtual absl::Status GatherLosses(std::vector<double>* losses) { return absl::OkStatus(); }

  // Checkpoints (between steps, on every replica's stage at once: ZeRO-1 gathers over the
  // group). Fills OptimizerConfig::states with the full moments of this stage's chunks; without
  // a sharded optimizer they are there already.
  virtual absl::Status ExportOptimizerState() { return absl::OkStatus(); }
  // Drops what ExportOptimizerState gathered (ZeRO-1: the full moments, once written).
  virtual void ReleaseExportedOptimizerState() {}
  // Bytes of optimizer state (AdamW moments) this stage holds now.
  virtual int64_t OptimizerStateBytes() const { return 0; }
  // Fine-grained callables (runtime/sub_step_graph.h). The layers of the chunks held here
  // (which are MoE); empty: this stage runs whole actions only.
  virtual SubStepLayout SubStepLayoutOf() const { return {}; }
  // Sub-step `order` of a compute action, on the lane order.lane() says: the first takes the
  // action's input (`input` as for Forward / BackwardInput / Backward), the last fills
  // `output` / `loss` as the whole call does; a whole order is the whole call. Dispatch and
  // combine run on the communication lane concurrently with the compute lane's sub-steps of
  // other microbatches. Unimplemented unless overridden.
  virtual absl::Status RunSubStep(const SubStepOrder& order, const Payload* input, Payload* output,
                                  double* loss);

  // Bytes one microbatch of `chunk` holds from its F to its W on this work's device, for the
  // trace's memory counter; -1: the host chunk's float activations (the CPU's).
  virtual int64_t ActivationBytes(int chunk) const { return -1; }
  // A GPU stage's device memory, for the trace's counter track: its allocator's bytes in use
  // and the peak so far, as of the last action enqueued. False (the default): no device.
  // Thread-safe: the stage's actor asks while its lane runs.
  virtual bool DeviceMemory(int64_t* in_use, int64_t* peak) const { return false; }

  // Completion after the call (a GPU stream: runtime/train/cuda_stage_work.h). False, the
  // default: a call's results are final when it returns. True: Forward, BackwardInput,
  // BackwardWeights and Backward return once their work is enqueued, and the results they were
  // handed (`output`, `input_grad`, `loss`) are written later, so the caller keeps them alive
  // and unread until then. Right after each such call returns OK, the caller hands its
  // completion to OnComplete. Whole actions only (not RunSubStep).
  virtual bool CompletesLater() const { return false; }
  // `done` runs once the work of the call before it is final (its results written), on another
  // thread, with that work's status and its device begin and end on the steady clock (ns since
  // the clock's epoch: trace::ToNanos; 0 when unknown). Completions run in call order. The
  // default, for works that complete in the call: `done` at once, OK, times unknown.
  using Completion = std::function<void(absl::Status status, int64_t begin_ns, int64_t end_ns)>;
  virtual void OnComplete(Completion done) { done(absl::OkStatus(), 0, 0); }
};

// Where a replica's stage sits in the data-parallel group: replica `replica` of `replicas`
// draws the step's global microbatches replica * M .. replica * M + M - 1 (the sampler and the
// chunks' loss scale are for replicas * M microbatches), and sums its gradients over
// `group` (not owned; null when replicas == 1).
//
// `zero_stage` 1 (--zero=1, ZeRO-1) shards the optimizer over `group`: member `replica` holds
// AdamW moments only for the elements of each chunk it owns (runtime/train/zero_shard.h) and
// updates only those; gradients are reduce-scattered to their owners (the tied embedding's,
// which the cross-chunk tied sum needs whole, is gathered back) and the updated parameters
// all-gathered. The sums are the same ordered sums as without it.
//
// With --ep > 1 the chunks hold only member m's routed experts (models::ExpertShard), the rest
// whole. `expert_group` is the stage's expert-parallel group (its members hold the other
// experts: the per-tensor squared norms of the experts are gathered over it, so every replica
// sees every expert's norm once); `expert_data_group` the replicas holding the same experts
// (edp), over which each bucket's expert elements are summed while the rest is summed over
// `group`; null when one replica holds them (edp = 1: nothing to sum). With ZeRO-1 the dense
// elements' moments are sharded over `group` and the experts' over `expert_data_group` (the
// one replica holding them keeps them all when it is null): ShardLayoutOf. Not owned.
struct DataParallelPlace {
  int replica = 0;
  int replicas = 1;
  Collective* group = nullptr;
  int zero_stage = 0;
  Collective* expert_group = nullptr;
  Collective* expert_data_group = nullptr;
};

// Test faults a ModelStageWork injects, for the rerun state machine's tests
// (runtime/cluster/fault_plan.h reads them from STAGEHAND_FAULTS). All zero: none.
struct StageFaults {
  // Transient: in the first run of this step only, bit 30 (the exponent's top bit) of the
  // first gradient element of this stage's first chunk flips before the norms are taken.
  int64_t flip_at_step = 0;
  // Persistent: in every run of this step, chunk 0's output activation of microbatch
  // `nan_microbatch` (the step's global index: with --dp, replica d's microbatch mb is
  // d x M + mb) is NaN (a poisoned data batch).
  int64_t nan_at_step = 0;
  int nan_microbatch = 0;
  // A slow device: every forward of this stage takes this much longer (straggler tests).
  double slow_forward_ms = 0;
};

// OK when a received activation or gradient (`what`, e.g. "activation for F") of `floats`
// floats has the shape (B, T_m, d_model) of its microbatch's length T_m = `length`; else
// InvalidArgument naming the step, chunk and microbatch, the floats and tokens received and
// the expected ones. The shape rides in the message (its float count); this is its check.
absl::Status CheckTensorRows(const char* what, int64_t step, int chunk, int mb, int64_t floats,
                             int micro_batch_size, int length, int64_t d_model);

// StageWork::GatherLosses over `group` (the stage's data-parallel group, a member per replica
// in replica order; null: leaves `losses` alone): every replica's microbatch losses, replica by
// replica.
absl::Status GatherReplicaLosses(Collective* group, std::vector<double>* losses);

// Stage `stage`'s part of STAGEHAND_FAULTS's plan.
StageFaults StageFaultsOf(const FaultPlan& plan, int stage);

// The real model: the chunks this stage holds (global chunk index -> chunk), the training
// windows and the optimizer configuration.
class ModelStageWork : public StageWork {
 public:
  // `num_microbatches` is this replica's M; `place` its data-parallel seat.
  ModelStageWork(std::map<int, Chunk*> chunks, int num_chunks, const WindowSampler* sampler,
                 int num_microbatches, OptimizerConfig optimizer, StageFaults faults = {},
                 DataParallelPlace place = {});
  // Sets every held chunk's step M (its loss-gradient scale): with data parallelism, the
  // step's D x M microbatches.
  void BeginStep(int64_t step, int num_microbatches) override;
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  TiedGradientMap TiedGradients() override;
  void SetTiedGradients(const TiedGradientMap& sums) override;
  std::map<int, std::vector<double>> SquaredNorms() override;
  void ApplyOptimizer(double clip_scale, int step) override;
  std::map<int, std::vector<std::string>> GradientNames() override;
  void DiscardGradients() override;
  double TakeDataSeconds() override;
  std::map<int, int64_t> GradientFloats() const override;
  absl::Status ReduceGradients(const GradBucket& bucket) override;
  absl::Status GatherLosses(std::vector<double>* losses) override;
  // Each chunk's parts in the order its backward finishes them, with their tensors' ranges
  // (data parallelism only): the head (the final norm and the head's weight or its tied copy)
  // in a chunk that holds it, then its layers, last to first, a layer that is not MoE as two
  // parts, its MLP's tensors then the rest (norms, attention). The embedding is in none.
  GradPartLayout GradientParts() const override;
  void SetGradientProgress(GradientProgress progress) override;
  absl::Status ExportOptimizerState() override;
  void ReleaseExportedOptimizerState() override;
  int64_t OptimizerStateBytes() const override;
  SubStepLayout SubStepLayoutOf() const override;
  absl::Status RunSubStep(const SubStepOrder& order, const Payload* input, Payload* output,
                          double* loss) override;

 private:
  absl::StatusOr<Chunk*> Get(int chunk) const;
  bool Sharded() const { return place_.group != nullptr && place_.zero_stage == 1; }
  // ZeRO-1: chunk `index`'s buffer as sharded (runtime/train/expert_layout.h), the group a
  // piece is sharded over (null: this replica alone holds it), and what this member owns of
  // each piece (flat ranges in order; the moments hold them one after another in that order).
  const ShardLayout& LayoutOf(int index) const { return shard_layouts_.at(index); }
  Collective* GroupOf(const ShardPiece& piece) const;
  std::vector<ElementRange> OwnedPieces(const ShardLayout& layout) const;
  // ZeRO-1: `op` on the elements `flat` of `data` (a buffer laid out as `layout`), piece by
  // piece over each piece's group (none where this replica alone holds the piece).
  using ShardOp = absl::Status (*)(Collective&, const ShardWindow&, const ElementRange&);
  absl::Status OnPieces(ShardOp op, const ShardLayout& layout, float* data,
                        const ElementRange& flat) const;
  // Each member's `mine` over `group` (null: this member's alone), summed entry by entry in
  // member order; NaNs when the exchange fails (the driver stops the step).
  std::vector<double> SumOverMembers(Collective* group, const std::vector<double>& mine);
  // ZeRO-1: the range of `chunk`'s tied embedding (its own or its tied copy), empty when the
  // model has one chunk or `chunk` holds none.
  ElementRange TiedRange(const Chunk& chunk) const;
  // ZeRO-1 phases.
  std::map<int, std::vector<double>> ShardedSquaredNorms();
  // --ep's expert shards: `norms` (this replica's tensors) with every member's experts in the
  // whole model's order, and a bucket summed over dp (dense elements) and edp (expert elements).
  std::map<int, std::vector<double>> ExpertShardSquaredNorms(
      std::map<int, std::vector<double>> norms);
  absl::Status ReduceDenseAndExperts(Chunk& chunk, const GradBucket& bucket);
  absl::Status ShardedUpdate(int index, Chunk& chunk, double clip_scale, int step);
  OptimizerState& FullState(int index);
  // F's ends around its layers' parts: the sampled batch (and test faults) into the chunk's
  // ForwardBegin; ForwardEnd and the output or loss.
  absl::Status BeginForward(Chunk* c, int chunk, int mb, const Payload* input);
  absl::Status EndForward(Chunk* c, int chunk, int mb, Payload* output, double* loss);
  // I's start: `grad` (null for the last chunk) is B x T_m x C floats, T_m the length of F(mb).
  absl::Status CheckGradient(const Chunk& c, int chunk, int mb, const Payload* grad) const;
  // I's end: the input gradient into `input_grad` (not for the first chunk).
  void CopyInputGrad(Chunk* c, int mb, Payload* input_grad) const;
  // W in its parts (bit for bit the whole call), reporting each finished part of
  // GradientParts to progress_ (the fused B reports the same parts: Backward).
  absl::Status BackwardWeightsReporting(Chunk* c, int chunk, int mb);
  DataParallelPlace place_;
  std::map<int, Chunk*> chunks_;
  int num_chunks_;
  const WindowSampler* sampler_;
  int num_microbatches_;
  // The step's index of this replica's microbatch `mb`: replica d holds d x M .. d x M + M - 1,
  // M this step's (a batch-size ramp-up changes it step by step).
  int GlobalMicrobatch(int mb) const {
    return place_.replica * (step_microbatches_ > 0 ? step_microbatches_ : num_microbatches_) + mb;
  }
  OptimizerConfig optimizer_;
  std::map<int, OptimizerState> states_;        // without OptimizerConfig::states (full)
  std::map<int, OptimizerState> shard_states_;  // ZeRO-1: the owned elements' moments
  std::map<int, ShardLayout> shard_layouts_;    // ZeRO-1: chunk -> its layout
  int64_t step_ = 0;
  StageFaults faults_;
  int run_ = 0;                       // runs of step_ begun before this one (0: the first run)
  int step_microbatches_ = 0;         // this replica's M of the step (BeginStep)
  std::map<int, int> weight_passes_;  // chunk -> W passes begun this step
  GradientProgress progress_;
  absl::Status step_status_;  // BeginStep's: an M the chunks cannot take fails the first F
  // ZeRO-1: a failed collective of the optimizer phases (those return no status); it fails
  // every later step's first F.
  absl::Status optimizer_status_;
  double data_seconds_ = 0;
};

// Work of known duration (sleeps; or nothing at all when every duration is 0), with
// payloads of `payload_floats` floats: for overlap tests and runtime-overhead benchmarks.
struct SyntheticDurations {
  double forward_us = 0, backward_input_us = 0, backward_weight_us = 0;
  int payload_floats = 1;
};

class SyntheticStageWork : public StageWork {
 public:
  SyntheticStageWork(SyntheticDurations durations, int num_chunks);
  void BeginStep(int64_t, int) override {}
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  TiedGradientMap TiedGradients() override { return {}; }
  void SetTiedGradients(const TiedGradientMap&) override {}
  std::map<int, std::vector<double>> SquaredNorms() override { return {}; }
  void ApplyOptimizer(double, int) override {}
  std::map<int, std::vector<std::string>> GradientNames() override { return {}; }
  void DiscardGradients() override {}

 private:
  SyntheticDurations d_;
  int num_chunks_;
};

// How the optimizer state is split, as the "optimizer state" lines say it (one process and the
// cluster's workers alike): "" when every replica holds all of it.
std::string OptimizerStateSharding(int dp, int ep, int zero);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_STAGE_WORK_H_
