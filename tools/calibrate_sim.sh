#!/usr/bin/env bash
# Issue 15, "calibration": how close tools/simulate comes to a real run. Runs the real CPU
# runtime (tools/launch --trace) for the default model with 1f1b and an 8-layer model with zb_v,
# both at P=4, M=8; simulates each from its own trace (--profile), once with a compute lane per
# stage and once with the stages sharing this machine's cores (--cores); prints simulated vs
# measured median step time (warm-up step excluded on both sides) and the error.
# Measured wall time: other load on the machine shows in the measured side.
#
#   tools/calibrate_sim.sh [--steps=8] [--cores=N (default: nproc)]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=8 CORES=$(nproc)
for arg in "$@"; do
  case "$arg" in
    --steps=*) STEPS="${arg#*=}" ;;
    --cores=*) CORES="${arg#*=}" ;;
    *) echo "calibrate_sim.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
./bazelw build //tools:launch //tools:simulate //tools:trace >&2
OUT=$(mktemp -d)

median() {  # median step time (ms) of a real run's trace, warm-up excluded
  bazel-bin/tools/trace summary "$1" | sed -n 's/^median step time \([0-9.]*\) ms.*/\1/p'
}
simulated() {  # median step time (ms) simulated from a profile: simulated TRACE PLANNER LAYERS CORES
  bazel-bin/tools/simulate --profile="$1" --planner="$2" --layers="$3" --cores="$4" \
    --stages=4 --microbatches=8 --model=launch --device=cpu --steps=1 |
    sed -n 's/^step time .*(mean; median \([0-9.]*\) ms).*/\1/p'
}

printf "%-34s %12s %14s %8s %18s %8s\n" "run (P=4, M=8, $STEPS steps)" "measured ms" \
  "sim, lane/stage" "error" "sim, $CORES cores" "error"
for case in "default model (4 layers), 1f1b|1f1b|4" "8-layer model, zb_v|zb_v|8"; do
  IFS='|' read -r name planner layers <<<"$case"
  trace="$OUT/$planner.json"
  bazel-bin/tools/launch --stages=4 --microbatches=8 --layers="$layers" --planner="$planner" \
    --steps="$STEPS" --eval_every=0 --eval_batches=1 --log_every=1000 --trace="$trace" \
    >"$OUT/$planner.log" 2>&1 || { echo "$name: launch failed: $(tail -1 "$OUT/$planner.log")"; continue; }
  measured=$(median "$trace")
  lanes=$(simulated "$trace" "$planner" "$layers" 0)
  shared=$(simulated "$trace" "$planner" "$layers" "$CORES")
  awk -v n="$name" -v m="$measured" -v a="$lanes" -v b="$shared" 'BEGIN {
    printf "%-34s %12.3f %14.3f %+7.1f%% %18.3f %+7.1f%%\n", n, m, a, 100 * (a - m) / m, b,
           100 * (b - m) / m }'
done
echo "traces in $OUT"
