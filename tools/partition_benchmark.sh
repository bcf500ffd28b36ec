#!/usr/bin/env bash
# partition_benchmark: measured step time of the heterogeneous example config at P=4 with the
# equal-count cut against --partition=balanced (FLOP estimates) and --partition=profile:TRACE
# (measured per-chunk times of a traced equal-cut run made first, in the same go), alternating
# runs; prints each run, the medians and the ratios to equal. Not a correctness check.
# Usage: tools/partition_benchmark.sh [runs per cut, default 3] [steps per run, default 12]
set -euo pipefail

RUNS="${1:-3}"
STEPS="${2:-12}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
./bazelw build //tools:launch >&2
LAUNCH="$(./bazelw info bazel-bin 2>/dev/null)/tools/launch"
CONFIG="$ROOT/models/configs/heterogeneous.json"
TRACE="$(mktemp -d)/equal_trace.json"

run() {  # launch with the benchmark's shape and extra flags
  "$LAUNCH" --model_config="$CONFIG" --stages=4 --microbatches=8 --steps="$STEPS" \
    --eval_batches=1 "$@" 2>&1
}
step_ms() {  # the summary line's step time, in ms
  run --partition="$1" | awk '/^summary: step time/ { print $4 }'
}

run --partition=equal --trace="$TRACE" >/dev/null  # the profile
run --partition="profile:$TRACE" | grep '^partition' >&2
run --partition=balanced | grep '^partition' >&2
declare -a equal balanced profile
for ((i = 0; i < RUNS; ++i)); do
  equal+=("$(step_ms equal)")
  balanced+=("$(step_ms balanced)")
  profile+=("$(step_ms "profile:$TRACE")")
  echo "run $((i + 1)): equal ${equal[-1]} ms, balanced ${balanced[-1]} ms, profile ${profile[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
me="$(median "${equal[@]}")"
mb="$(median "${balanced[@]}")"
mp="$(median "${profile[@]}")"
awk -v e="$me" -v b="$mb" -v p="$mp" 'BEGIN { printf "median step time: equal %.1f ms, balanced %.1f ms, profile %.1f ms; ratio balanced/equal %.3f, profile/equal %.3f\n", e, b, p, b / e, p / e }'
