#!/usr/bin/env bash
# Issue 15, "the same in reality": the real CPU runtime at P=4, M=16 with one stage slowed
# (--slow_stage=S:FACTOR stretches its measured compute). Runs every planner for STEPS steps
# with --trace, takes each run's median step time (tools/trace, warm-up step excluded), and
# prints adaptive's ratio to the best static planner and auto's: tools/simulate
# --planner=auto on the profile of a short real run picks a planner, whose measured median
# is compared with the best measured. Measured wall time: other load on the machine shows.
#
#   tools/slow_stage_bench.sh [--slow_stage=1:2] [--steps=8] [--layers=8] [--planners="1f1b ..."]
# (8 layers: the V planners cut the model into 2P = 8 chunks.)
set -euo pipefail
cd "$(dirname "$0")/.."
SLOW=1:2 STEPS=8 LAYERS=8 PLANNERS="" EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --slow_stage=*) SLOW="${arg#*=}" ;;
    --steps=*) STEPS="${arg#*=}" ;;
    --layers=*) LAYERS="${arg#*=}" ;;
    --planners=*) PLANNERS="${arg#*=}" ;;
    *) EXTRA+=("$arg") ;;
  esac
done
./bazelw build //tools:launch //tools:simulate //tools:trace >&2
OUT=$(mktemp -d)
RUN=(bazel-bin/tools/launch --stages=4 --microbatches=16 --layers="$LAYERS" --steps="$STEPS"
     --slow_stage="$SLOW"
     --eval_every=0 --eval_batches=1 --log_every=1000 "${EXTRA[@]}")
[[ -n "$PLANNERS" ]] || PLANNERS=$(bazel-bin/tools/launch --list_planners | awk '{print $1}')

median() {  # median step time (ms) of a trace
  bazel-bin/tools/trace summary "$1" | sed -n 's/^median step time \([0-9.]*\) ms.*/\1/p'
}

declare -A MEASURED
for p in $PLANNERS; do
  if "${RUN[@]}" --planner="$p" --trace="$OUT/$p.json" >"$OUT/$p.log" 2>&1; then
    MEASURED[$p]=$(median "$OUT/$p.json")
    printf "%-12s median step %8s ms  (--slow_stage=%s, %s steps)\n" "$p" "${MEASURED[$p]}" "$SLOW" "$STEPS"
  else
    printf "%-12s failed: %s\n" "$p" "$(tail -1 "$OUT/$p.log")"
  fi
done

best="" best_name=""
for p in "${!MEASURED[@]}"; do
  [[ "$p" != adaptive ]] || continue
  t=${MEASURED[$p]}
  if [[ -z "$best" ]] || awk "BEGIN{exit !($t < $best)}"; then best=$t best_name=$p; fi
done
if [[ -n "${MEASURED[adaptive]:-}" && -n "$best" ]]; then
  awk -v a="${MEASURED[adaptive]}" -v b="$best" -v n="$best_name" \
    'BEGIN { printf "adaptive / best static (%s) measured median step time: %.3f\n", n, a / b }'
fi

# auto: simulate every planner on the profile of the 1f1b run (a real trace of this setup).
if [[ -f "$OUT/1f1b.json" ]]; then
  pick=$(bazel-bin/tools/simulate --planner=auto --profile="$OUT/1f1b.json" --stages=4 \
           --microbatches=16 --model=launch --layers="$LAYERS" --device=cpu --steps=3 | sed -n 's/^auto picked //p')
  all_best="" all_best_name=""
  for p in "${!MEASURED[@]}"; do
    t=${MEASURED[$p]}
    if [[ -z "$all_best" ]] || awk "BEGIN{exit !($t < $all_best)}"; then all_best=$t all_best_name=$p; fi
  done
  if [[ -n "${MEASURED[$pick]:-}" ]]; then
    awk -v a="${MEASURED[$pick]}" -v b="$all_best" -v p="$pick" -v n="$all_best_name" \
      'BEGIN { printf "auto picked %s: its measured median / best measured (%s): %.3f\n", p, n, a / b }'
  else
    echo "auto picked $pick, which was not measured"
  fi
fi
echo "traces in $OUT"
