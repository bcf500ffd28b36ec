#!/usr/bin/env bash
# End-to-end test of tools/launch checkpoints: --exit_after then --resume (past a corrupted
# newest checkpoint) equals one uninterrupted run byte for byte; resuming under another
# stage count and under other (D, P, ZeRO, EP) layouts (one process, and a 4-process --dp=2
# cluster against one process), --init_from of an --export, and tools/generate. Not a unit test of
# the parts.
set -euo pipefail
BIN="${TEST_SRCDIR}/${TEST_WORKSPACE}/tools"
T="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 1 300); do echo "line $i: the quick brown fox jumps over the lazy dog, again and again."; done > "$T/corpus.txt"
FLAGS=(--data="$T/corpus.txt" --layers=2 --d_model=32 --heads=2 --seq_len=16 --micro_batch_size=2
       --microbatches=4 --stages=2 --steps=6 --eval_every=2 --eval_batches=2 --warmup_steps=2
       --weight_decay=0.1 --lr=3e-3)

echo "== 1. uninterrupted run"
"$BIN/launch" "${FLAGS[@]}" --checkpoint_dir="$T/a" --export="$T/a.safetensors" > "$T/a.out"
cat "$T/a.out"
[[ -f "$T/a/step_00000006/manifest.json" && -f "$T/a/loss_curve.svg" && -f "$T/a.safetensors" ]] || fail "missing outputs of run a"

echo "== 2. the same run stopped after step 3"
"$BIN/launch" "${FLAGS[@]}" --checkpoint_dir="$T/b" --checkpoint_every=2 --exit_after=3 > "$T/b1.out"
cat "$T/b1.out"
grep -q "stopped after step 3 of 6" "$T/b1.out" || fail "no clean stop after step 3"
[[ -d "$T/b/step_00000002" && -d "$T/b/step_00000003" && ! -d "$T/b/step_00000006" ]] || fail "wrong checkpoints"

echo "== 3. corrupt the newest checkpoint, then resume"
truncate -s -7 "$T/b/step_00000003/stage_1.safetensors"
"$BIN/launch" "${FLAGS[@]}" --checkpoint_dir="$T/b" --resume > "$T/b2.out" 2> "$T/b2.err"
cat "$T/b2.out" "$T/b2.err"
grep -q "skipping checkpoint step_00000003: .*truncated" "$T/b2.err" || fail "corruption not reported"
grep -q "resumed from .*step_00000002 (step 2)" "$T/b2.out" || fail "did not fall back to step 2"

echo "== 4. bitwise: the final checkpoints (manifest with every loss, parameters, moments) agree"
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/a/step_00000006/$f" "$T/b/step_00000006/$f" || fail "$f differs between the runs"
done
losses() { grep -oE "^step [3-6] (loss|held-out loss) [0-9.]+" "$1"; }
diff <(losses "$T/a.out") <(losses "$T/b2.out") || fail "step losses differ"

echo "== 5. resume under one stage instead of two"
mkdir -p "$T/c" && cp -r "$T/b/step_00000002" "$T/c/"
"$BIN/launch" "${FLAGS[@]}" --stages=1 --checkpoint_dir="$T/c" --resume > "$T/c.out"
grep -q "resumed from .*step_00000002 (step 2)" "$T/c.out" || fail "no resume under one stage"
grep -q "^step 6 loss" "$T/c.out" || fail "the one-stage run did not finish"

echo "== 6. --init_from an export gives the exported model's held-out loss"
"$BIN/launch" "${FLAGS[@]}" --steps=1 --init_from="$T/a.safetensors" > "$T/d.out"
final=$(grep -E "^step 6 held-out loss" "$T/a.out" | awk '{print $5}')
initial=$(grep -E "^held-out loss before training" "$T/d.out" | awk '{print $5}')
[[ -n "$final" && "$final" == "$initial" ]] || fail "init_from loss $initial != exported model's $final"

echo "== 7. generate is deterministic per seed"
"$BIN/generate" --checkpoint="$T/a" --prompt="line 1" --max_new_tokens=30 --seed=3 > "$T/g1.out"
"$BIN/generate" --checkpoint="$T/a/step_00000006" --prompt="line 1" --max_new_tokens=30 --seed=3 > "$T/g2.out"
cat "$T/g1.out"
cmp "$T/g1.out" "$T/g2.out" || fail "generate differs for the same seed"
[[ $(wc -c < "$T/g1.out") -gt 10 ]] || fail "generate printed nothing"

echo "== 8. --resume with an empty folder starts at step 0"
"$BIN/launch" "${FLAGS[@]}" --steps=2 --checkpoint_dir="$T/e" --resume > "$T/e.out"
grep -q "starting at step 0" "$T/e.out" || fail "no fresh start"

echo "== 9. --rampup_batch_size: M per step follows Megatron's formula; a resume mid-ramp is bitwise"
RAMP=(--rampup_batch_size=2,2,24 --steps=8 --eval_every=0)
# Traced (a trace holds each step at its own M): the trace changes no result (the checkpoints
# below are compared with the untraced run's) and its summary lists each step's M.
"$BIN/launch" "${FLAGS[@]}" "${RAMP[@]}" --checkpoint_dir="$T/r" --trace="$T/r_trace.json" > "$T/r.out"
cat "$T/r.out"
"$BIN/trace" summary "$T/r_trace.json" > "$T/r_summary.out" || fail "ramp-up: trace summary failed"
cat "$T/r_summary.out"
grep -q "1..3 microbatches per step (a batch-size ramp-up)" "$T/r_summary.out" || fail "ramp-up: no M range in the summary"
grep -Eq "^1 +[0-9.]+ +[0-9.]+ +M=1" "$T/r_summary.out" || fail "ramp-up: step 1 is not M=1 in the trace"
grep -Eq "^7 +[0-9.]+ +[0-9.]+ +M=3" "$T/r_summary.out" || fail "ramp-up: step 7 is not M=3 in the trace"
# 2,2,24 to 8: 8 samples per increment; batches 2,2,2,2 | 4,4 | 6,6 | 8 (consumed 0..28).
for want in "step 1 global batch 2 sequences (1 microbatches)" "step 5 global batch 4 sequences (2 microbatches)" \
            "step 7 global batch 6 sequences (3 microbatches)"; do
  grep -q "batch ramp-up: $want" "$T/r.out" || fail "ramp-up: no '$want'"
done
grep -q "plans validated for 1, 2, 3 microbatches" "$T/r.out" || fail "ramp-up: plans not validated per M"
"$BIN/launch" "${FLAGS[@]}" "${RAMP[@]}" --checkpoint_dir="$T/s" --exit_after=5 > "$T/s1.out"
"$BIN/launch" "${FLAGS[@]}" "${RAMP[@]}" --checkpoint_dir="$T/s" --resume > "$T/s2.out"
cat "$T/s2.out"
grep -q "resumed from .*step_00000005 (step 5)" "$T/s2.out" || fail "ramp-up: no resume at step 5"
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/r/step_00000008/$f" "$T/s/step_00000008/$f" || fail "ramp-up: $f differs after a resume mid-ramp"
done

echo "== 10. the rerun state machine: STAGEHAND_FAULTS flip (transient) and nan (persistent)"
SAFE=(--steps=4 --eval_every=0)
"$BIN/launch" "${FLAGS[@]}" "${SAFE[@]}" --save_params="$T/clean.safetensors" \
  --checkpoint_dir="$T/cc" --checkpoint_every=1 > "$T/clean.out"
STAGEHAND_FAULTS=flip=1:3 "$BIN/launch" "${FLAGS[@]}" "${SAFE[@]}" --save_params="$T/flip.safetensors" \
  --checkpoint_dir="$T/cf" --checkpoint_every=1 > "$T/flip.out"
cat "$T/flip.out"
grep -q "transient fault on rank 0 (stage 1)" "$T/flip.out" || fail "flip: no transient fault reported"
cmp "$T/clean.safetensors" "$T/flip.safetensors" || fail "flip: parameters differ from the unfaulted run"
# The checkpoints written around the rerun (after steps 2, 3 and 4) are the unfaulted run's.
for step in 00000003 00000004; do
  for f in manifest.json stage_0.safetensors stage_1.safetensors; do
    cmp "$T/cc/step_$step/$f" "$T/cf/step_$step/$f" || fail "flip: checkpoint step_$step/$f differs"
  done
done
if STAGEHAND_FAULTS=nan=2:1 "$BIN/launch" "${FLAGS[@]}" "${SAFE[@]}" > "$T/nan.out" 2> "$T/nan.err"; then
  fail "nan: a persistent NaN did not stop the run"
fi
cat "$T/nan.err"
grep -q "persistent fault, the rerun reproduced it: step 2: non-finite loss in microbatch 1" "$T/nan.err" || fail "nan: no report"
STAGEHAND_FAULTS=nan=2:1 "$BIN/launch" "${FLAGS[@]}" "${SAFE[@]}" --on_bad_step=skip > "$T/skip.out"
cat "$T/skip.out"
grep -q "^step 2 skipped (no update)" "$T/skip.out" || fail "skip: step 2 not skipped"
grep -q "^step 4 loss" "$T/skip.out" || fail "skip: the run did not go on"

echo "== 11. one checkpoint format for every (D, P, ZeRO) layout, resumed under another"
# Uninterrupted references of 8 microbatches a step: D=2 with and without ZeRO-1, and D=1.
"$BIN/launch" "${FLAGS[@]}" --dp=2 --zero=1 --checkpoint_dir="$T/z1" > "$T/z1.out"
cat "$T/z1.out"
"$BIN/launch" "${FLAGS[@]}" --dp=2 --checkpoint_dir="$T/z0" > "$T/z0.out"
"$BIN/launch" "${FLAGS[@]}" --microbatches=8 --checkpoint_dir="$T/d1" > "$T/d1.out"
grep -qE "optimizer state per rank \(AdamW moments held, ZeRO-1 over 2 replicas\): pp 0: " "$T/z1.out" ||
  fail "ZeRO-1: no optimizer-state line"
# ZeRO-1 gathers its shards to write: the same files as the unsharded run, bit for bit.
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/z1/step_00000006/$f" "$T/z0/step_00000006/$f" || fail "ZeRO-1: $f differs from --zero=0's"
done
# A D=2 ZeRO-1 checkpoint of step 3, resumed under other layouts.
"$BIN/launch" "${FLAGS[@]}" --dp=2 --zero=1 --checkpoint_dir="$T/zr" --exit_after=3 > /dev/null
resume() {  # resume DIR FLAGS...: step 3 of FROM (first argument) copied into DIR, resumed
  local from=$1 dir=$2; shift 2
  mkdir -p "$dir" && cp -r "$from/step_00000003" "$dir/"
  "$BIN/launch" "${FLAGS[@]}" "$@" --checkpoint_dir="$dir" --resume > "$dir.out"
  grep -q "resumed from .*step_00000003 (step 3)" "$dir.out" || fail "no resume in $dir"
}
late() { grep -oE "^step [4-6] (loss|held-out loss) [0-9.]+" "$1"; }
resume "$T/zr" "$T/off" --dp=2                         # ZeRO on -> off: bitwise
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/off/step_00000006/$f" "$T/z0/step_00000006/$f" || fail "ZeRO on -> off: $f differs"
done
resume "$T/zr" "$T/one" --microbatches=8 --stages=1    # D=2 -> D=1 at one stage: 1e-5
diff <(late "$T/d1.out") <(late "$T/one.out") || fail "D=2 -> D=1: losses differ"
"$BIN/launch" "${FLAGS[@]}" --microbatches=8 --checkpoint_dir="$T/dr" --exit_after=3 > /dev/null
resume "$T/dr" "$T/two" --dp=2 --zero=1                 # D=1 -> D=2 with ZeRO-1: 1e-5
diff <(late "$T/z1.out") <(late "$T/two.out") || fail "D=1 -> D=2: losses differ"

echo "== 12. across the cluster: a --dp=2 --nprocs=4 checkpoint resumed in one process, and back"
"$BIN/launch" "${FLAGS[@]}" --dp=2 --nprocs=4 --checkpoint_dir="$T/c4" --checkpoint_every=3 > "$T/c4.out"
cat "$T/c4.out"
# 4 worker processes write the one-process --dp=2 run's files, byte for byte.
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/c4/step_00000006/$f" "$T/z0/step_00000006/$f" || fail "cluster --dp=2: $f differs"
done
resume "$T/c4" "$T/c4one" --microbatches=8    # cluster D=2 -> one process D=1: 1e-5
diff <(late "$T/d1.out") <(late "$T/c4one.out") || fail "cluster D=2 -> D=1: losses differ"
# The reverse: the one-process D=1 checkpoint of step 3 resumed by --dp=2 on 4 workers, whose
# rank 0 prints 6 decimals (rounded here to the one-process run's 4).
mkdir -p "$T/c4back" && cp -r "$T/dr/step_00000003" "$T/c4back/"
"$BIN/launch" "${FLAGS[@]}" --dp=2 --nprocs=4 --checkpoint_dir="$T/c4back" --resume > "$T/c4back.out"
grep -q "^\[rank 0\] rank 0: resumed from .*step_00000003 (step 3)" "$T/c4back.out" ||
  fail "no cluster resume"
clate() {
  grep -E "^\[rank 0\] step [4-6] (loss|held-out loss) [0-9.]+" "$1" |
    awk '{ if ($5 == "loss") printf "step %s loss %.4f\n", $4, $6;
           else printf "step %s held-out loss %s\n", $4, $7 }'
}
[[ $(clate "$T/c4back.out" | wc -l) == 5 ]] || fail "cluster resume: not every late line"
diff <(late "$T/z0.out") <(clate "$T/c4back.out") || fail "D=1 -> cluster D=2: losses differ"

echo "== 13. --ep: expert shards in the one global format; EP=2 resumed at EP=1 and at dp=4, and back"
cat > "$T/moe.json" <<'EOF'
{"vocab_size": 256, "max_seq_len": 16, "d_model": 32, "num_heads": 2,
 "moe": {"num_experts": 4, "top_k": 2, "ffn_hidden": 64, "capacity_factor": 1.25,
         "aux_loss_coeff": 0.01},
 "layers": [{"attention": "causal", "mlp": "dense"}, {"attention": "causal", "mlp": "moe"},
            {"attention": "causal", "mlp": "moe"}, {"attention": "causal", "mlp": "dense"}]}
EOF
EPF=(--data="$T/corpus.txt" --model_config="$T/moe.json" --seq_len=16 --micro_batch_size=2
     --microbatches=4 --stages=2 --steps=6 --eval_every=2 --eval_batches=2 --warmup_steps=2
     --weight_decay=0.1 --lr=3e-3 --dp=2)
"$BIN/launch" "${EPF[@]}" --ep=2 --checkpoint_dir="$T/ep2" > "$T/ep2.out"
cat "$T/ep2.out"
"$BIN/launch" "${EPF[@]}" --checkpoint_dir="$T/ep1" > "$T/ep1.out"
grep -qE "optimizer state per rank \(AdamW moments held, experts split over ep 2\): pp 0: " "$T/ep2.out" ||
  fail "--ep=2: no optimizer-state line"
"$BIN/launch" "${EPF[@]}" --ep=2 --checkpoint_dir="$T/ep2r" --exit_after=3 > /dev/null
"$BIN/launch" "${EPF[@]}" --checkpoint_dir="$T/ep1r" --exit_after=3 > /dev/null
eresume() {  # eresume FROM DIR FLAGS...: step 3 of FROM copied into DIR, resumed
  local from=$1 dir=$2; shift 2
  mkdir -p "$dir" && cp -r "$from/step_00000003" "$dir/"
  "$BIN/launch" "${EPF[@]}" "$@" --checkpoint_dir="$dir" --resume > "$dir.out"
  grep -q "resumed from .*step_00000003 (step 3)" "$dir.out" || fail "no resume in $dir"
}
# EP=2 -> EP=2: the shards gathered into the global names and sliced back, moments included:
# bitwise the uninterrupted run.
eresume "$T/ep2r" "$T/ep2to2" --ep=2
for f in manifest.json stage_0.safetensors stage_1.safetensors; do
  cmp "$T/ep2to2/step_00000006/$f" "$T/ep2/step_00000006/$f" || fail "EP=2 -> EP=2: $f differs"
done
[[ $(late "$T/ep2to2.out" | wc -l) == 5 ]] || fail "EP=2 -> EP=2: not every late line"
eresume "$T/ep2r" "$T/ep2to1" --ep=1                               # EP=2 -> EP=1: 1e-5
diff <(late "$T/ep1.out") <(late "$T/ep2to1.out") || fail "EP=2 -> EP=1: losses differ"
eresume "$T/ep1r" "$T/ep1to2" --ep=2                               # EP=1 -> EP=2: 1e-5
diff <(late "$T/ep2.out") <(late "$T/ep1to2.out") || fail "EP=1 -> EP=2: losses differ"
eresume "$T/ep2r" "$T/ep2to4" --dp=4 --ep=4 --microbatches=2 --stages=1  # another dp and P: 1e-5
diff <(late "$T/ep2.out") <(late "$T/ep2to4.out") || fail "EP=2 -> dp=4 EP=4: losses differ"

echo "== 14. --zero=1 --ep=2: the same global checkpoint as --zero=0 --ep=2, resumed either way"
same_step6() {  # same_step6 DIR WHAT: DIR's step-6 files are byte for byte the --ep=2 run's
  for f in manifest.json stage_0.safetensors stage_1.safetensors; do
    cmp "$1/step_00000006/$f" "$T/ep2/step_00000006/$f" || fail "$2: $f differs from --ep=2's"
  done
}
"$BIN/launch" "${EPF[@]}" --ep=2 --zero=1 --checkpoint_dir="$T/ez" > "$T/ez.out"
cat "$T/ez.out"
grep -qE "optimizer state per rank \(AdamW moments held, experts split over ep 2, ZeRO-1: dense over 2 replicas, experts over edp 1\): pp 0: " "$T/ez.out" ||
  fail "--zero=1 --ep=2: no optimizer-state line"
same_step6 "$T/ez" "--zero=1 --ep=2"
"$BIN/launch" "${EPF[@]}" --ep=2 --zero=1 --checkpoint_dir="$T/ezr" --exit_after=3 > /dev/null
eresume "$T/ezr" "$T/ezto0" --ep=2                   # ZeRO on -> off at EP=2: bitwise
same_step6 "$T/ezto0" "ZeRO-1 EP=2 -> ZeRO off"
eresume "$T/ep2r" "$T/ez0to1" --ep=2 --zero=1        # ZeRO off -> on at EP=2: bitwise
same_step6 "$T/ez0to1" "EP=2 -> ZeRO-1"
eresume "$T/ezr" "$T/ezto1" --ep=1                   # --zero=1 EP=2 -> --zero=0 EP=1: 1e-5
diff <(late "$T/ep1.out") <(late "$T/ezto1.out") || fail "ZeRO-1 EP=2 -> EP=1: losses differ"
echo PASS
