#!/usr/bin/env bash
# End-to-end: tools/launch trains the default model on the default corpus (the loss falls
# well below ln 256), runs are bitwise repeatable, and bad input gets a one-line error.
set -uo pipefail
LAUNCH="$TEST_SRCDIR/stagehand/tools/launch"
OUT="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 1. 300 steps of the default model (fewer tokens per step than the default, to stay fast).
"$LAUNCH" --steps=300 --stages=1 --microbatches=2 --micro_batch_size=4 > "$OUT/train.log" 2>&1 \
  || fail "training exited non-zero: $(tail -3 "$OUT/train.log")"
grep -q '^step 300 loss ' "$OUT/train.log" || fail "no per-step line for step 300"
after=$(sed -n 's/^held-out loss after 300 steps \([0-9.]*\) (from \([0-9.]*\))$/\1/p' "$OUT/train.log")
before=$(sed -n 's/^held-out loss after 300 steps \([0-9.]*\) (from \([0-9.]*\))$/\2/p' "$OUT/train.log")
if [[ -z "$after" ]]; then
  fail "no held-out loss line"
else
  echo "held-out loss $before -> $after"
  awk -v a="$after" -v b="$before" 'BEGIN { exit !(b > 5.3 && a < 3.0) }' \
    || fail "held-out loss $before -> $after: expected a start near ln 256 = 5.55 and an end below 3.0"
fi

# 2. Same seed, same parameters, bit for bit (pipelined: 4 stages, 1F1B).
for run in a b; do
  "$LAUNCH" --steps=5 --seed=7 --save_params="$OUT/$run.safetensors" > "$OUT/$run.log" 2>&1 \
    || fail "run $run exited non-zero: $(tail -3 "$OUT/$run.log")"
done
cmp -s "$OUT/a.safetensors" "$OUT/b.safetensors" || fail "two runs with the same seed differ"
# The 4 compute lanes split the cores' OpenMP threads and say so; OMP_NUM_THREADS overrides it,
# and the thread count changes no bit.
grep -q '^launch: 4 compute lanes share this host.s [0-9]* cores: OpenMP teams of [0-9]* thread' \
  "$OUT/a.log" || fail "no line saying how the compute lanes split the cores: $(head -2 "$OUT/a.log")"
OMP_NUM_THREADS=2 "$LAUNCH" --steps=5 --seed=7 --save_params="$OUT/omp2.safetensors" \
  > "$OUT/omp2.log" 2>&1 || fail "OMP_NUM_THREADS=2 run exited non-zero: $(tail -3 "$OUT/omp2.log")"
grep -q 'compute lanes share' "$OUT/omp2.log" && fail "OMP_NUM_THREADS=2 was not left to the user"
cmp -s "$OUT/a.safetensors" "$OUT/omp2.safetensors" || fail "OpenMP teams of 2 changed the bits"
# One action at a time on each lane (--lane_depth=1) against the default queue of two: the same
# bits, and the traced run says its lanes' gap.
"$LAUNCH" --steps=5 --seed=7 --lane_depth=1 --save_params="$OUT/depth1.safetensors" \
  --trace="$OUT/depth1.json" > "$OUT/depth1.log" 2>&1 \
  || fail "--lane_depth=1 run exited non-zero: $(tail -3 "$OUT/depth1.log")"
cmp -s "$OUT/a.safetensors" "$OUT/depth1.safetensors" || fail "--lane_depth=1 changed the bits"
grep -q '^trace: lane gap median [0-9.]* us between an action and the next' "$OUT/depth1.log" \
  || fail "no lane gap line: $(grep '^trace' "$OUT/depth1.log")"
# A slowed stage changes timing only: with --dp=2 the loss stage still gathers every replica's
# losses through it, and it still reports its optimizer state.
for slow in "" "--slow_stage=1:2"; do
  # shellcheck disable=SC2086
  "$LAUNCH" --dp=2 --stages=2 --steps=2 --eval_every=0 $slow > "$OUT/dp${slow:+_slow}.log" 2>&1 \
    || fail "--dp=2 $slow exited non-zero: $(tail -3 "$OUT/dp${slow:+_slow}.log")"
done
cmp -s <(grep '^step' "$OUT/dp.log" | awk '{print $1, $2, $3, $4}') \
  <(grep '^step' "$OUT/dp_slow.log" | awk '{print $1, $2, $3, $4}') \
  || fail "--slow_stage changed the --dp=2 losses: $(grep '^step' "$OUT/dp_slow.log")"
grep -q 'pp 1: 0.000 MiB' "$OUT/dp_slow.log" && fail "the slowed stage reported no optimizer state"
"$LAUNCH" --steps=5 --seed=8 --save_params="$OUT/c.safetensors" > /dev/null 2>&1
cmp -s "$OUT/a.safetensors" "$OUT/c.safetensors" && fail "a different seed gave the same parameters"

# 3. Bad input: a one-line error naming the problem and a non-zero exit, never a crash.
expect_error() {  # expected-text args...
  local want="$1"; shift
  "$LAUNCH" "$@" > "$OUT/err.out" 2> "$OUT/err.log"
  local rc=$?
  if (( rc == 0 || rc > 2 )); then fail "$* exited $rc (want 1 or 2)"; fi
  grep -q -- "$want" "$OUT/err.log" || fail "$*: error does not mention '$want': $(cat "$OUT/err.log")"
  (( $(wc -l < "$OUT/err.log") == 1 )) || fail "$*: error is not one line: $(cat "$OUT/err.log")"
}
expect_error "Unknown command line flag 'bogus'" --bogus=1
expect_error "d_model=30 is not divisible by heads=4" --d_model=30
expect_error "data path /no/such/corpus does not exist" --data=/no/such/corpus
mkdir -p "$OUT/empty"
expect_error "empty corpus" --data="$OUT/empty"
expect_error "no planner named \"nope\"; known planners: " --planner=nope
expect_error "cannot cut 2 layers into 4 chunks" --layers=2
expect_error "--steps=0 must be positive" --steps=0
expect_error "--moe_aux_loss_coeff=0.5 but the model has no MoE layer" --moe_aux_loss_coeff=0.5
expect_error "--moe_z_loss_coeff=-3 must be in" --moe_z_loss_coeff=-3
# Outputs that could not be written at the end are refused before training starts.
expect_error "--save_params=/no/such/dir/p.safetensors: directory /no/such/dir does not exist" \
  --save_params=/no/such/dir/p.safetensors
expect_error "--trace=$OUT is a directory" --trace="$OUT"
expect_error "--export=/no/such/dir/hf.safetensors: directory" --export=/no/such/dir/hf.safetensors
# --device: cpu or cuda; cuda refuses what its stage work does not train, naming the flag, and a
# launch built without --config=cuda says how to build one.
expect_error "--lane_depth=0: must be between 1 and 8" --lane_depth=0
expect_error "--device=tpu: unknown device (cpu or cuda)" --device=tpu
expect_error "--device=cuda does not take --slow_stage" --device=cuda --slow_stage=0:2
expect_error "--device=cuda does not take --seq_len_policy=variable" --device=cuda \
  --seq_len_policy=variable --microbatch_tokens=128
expect_error "--device=cuda does not take --packing=documents" --device=cuda --packing=documents
cat > "$OUT/rms.json" <<'JSON'
{"vocab_size": 256, "max_seq_len": 16, "d_model": 32, "num_heads": 2, "norm": "rmsnorm",
 "layers": [{"attention": "causal", "mlp": "dense"}]}
JSON
expect_error "the CUDA kernels do not run norm=rmsnorm yet" --device=cuda \
  --model_config="$OUT/rms.json" --stages=1 --seq_len=16
expect_error "this launch was built without CUDA; build and run it with ./bazelw run --config=cuda" \
  --device=cuda
# --dp and workers on GPUs pass the checks above (then need a CUDA build).
expect_error "this launch was built without CUDA" --device=cuda --dp=2 --zero=1
expect_error "this launch was built without CUDA" --device=cuda --nprocs=2 --stages=2

# 4. Under `bazel run` a relative --model_config means the directory bazel ran in
#    (BUILD_WORKING_DIRECTORY), as every other path flag does, wherever the process starts.
mkdir -p "$OUT/wd/configs"
cat > "$OUT/wd/configs/tiny.json" <<'JSON'
{"vocab_size": 256, "max_seq_len": 16, "d_model": 32, "num_heads": 2, "tied_head": false,
 "layers": [{"attention": "causal", "mlp": "dense"}, {"attention": "causal", "mlp": "dense"}]}
JSON
(cd / && BUILD_WORKING_DIRECTORY="$OUT/wd" "$LAUNCH" --model_config=configs/tiny.json --steps=1 \
  --stages=2 --seq_len=16 --eval_every=0) > "$OUT/wd.log" 2>&1 \
  || fail "relative --model_config under bazel run: $(tail -2 "$OUT/wd.log")"
grep -q "^model config $OUT/wd/configs/tiny.json" "$OUT/wd.log" \
  || fail "the model config line does not name $OUT/wd/configs/tiny.json: $(grep 'model config' "$OUT/wd.log")"

if (( failures )); then echo "$failures check(s) failed"; exit 1; fi
echo "all launch checks passed"
