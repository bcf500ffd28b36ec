#!/usr/bin/env bash
# Issue 15, "the same in reality": the real CPU runtime at P=4, M=16 with one stage slowed
# (--slow_stage=S:FACTOR stretches its measured compute). Runs every planner for STEPS steps
# with --trace, takes each run's median step time (tools/trace, warm-up step excluded), and
# prints adaptive's ratio to the best static planner, and auto's (tools/launch --planner=auto,
# which picks by simulation and re-plans from its own trace) to the best measured planner.
# Measured wall time: other load on the machine shows.
#
# --rounds=N runs the planners (and auto) round-robin N times and takes, per planner, the
# median of its runs' medians: the machine's load drifts between runs, and round-robin spreads
# the drift over every planner instead of charging it to whichever ran at a bad moment.
#
#   tools/slow_stage_bench.sh [--slow_stage=1:2] [--steps=8] [--layers=8] [--rounds=1]
#                             [--planners="1f1b ..."]
# (8 layers: the V planners cut the model into 2P = 8 chunks.)
set -euo pipefail
cd "$(dirname "$0")/.."
SLOW=1:2 STEPS=8 LAYERS=8 PLANNERS="" ROUNDS=1 EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --slow_stage=*) SLOW="${arg#*=}" ;;
    --steps=*) STEPS="${arg#*=}" ;;
    --layers=*) LAYERS="${arg#*=}" ;;
    --planners=*) PLANNERS="${arg#*=}" ;;
    --rounds=*) ROUNDS="${arg#*=}" ;;
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

declare -A MEASURED RUNS
middle() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for ((round = 1; round <= ROUNDS; ++round)); do
  for p in $PLANNERS auto; do
    if "${RUN[@]}" --planner="$p" --trace="$OUT/$p.$round.json" >"$OUT/$p.$round.log" 2>&1; then
      RUNS[$p]="${RUNS[$p]:-} $(median "$OUT/$p.$round.json")"
    else
      printf "%-12s failed: %s\n" "$p" "$(tail -1 "$OUT/$p.$round.log")"
    fi
  done
done
for p in $PLANNERS auto; do
  [[ -n "${RUNS[$p]:-}" ]] || continue
  MEASURED[$p]=$(echo "${RUNS[$p]}" | middle)
  printf "%-12s median step %8s ms  (--slow_stage=%s, %s steps; runs:%s)\n" "$p" "${MEASURED[$p]}" \
    "$SLOW" "$STEPS" "${RUNS[$p]}"
done
[[ -z "${MEASURED[auto]:-}" ]] || grep -h '^auto:' "$OUT"/auto.*.log | cut -c1-160

best="" best_name=""
for p in "${!MEASURED[@]}"; do
  [[ "$p" != adaptive && "$p" != auto ]] || continue
  t=${MEASURED[$p]}
  if [[ -z "$best" ]] || awk "BEGIN{exit !($t < $best)}"; then best=$t best_name=$p; fi
done
if [[ -n "${MEASURED[adaptive]:-}" && -n "$best" ]]; then
  awk -v a="${MEASURED[adaptive]}" -v b="$best" -v n="$best_name" \
    'BEGIN { printf "adaptive / best static (%s) measured median step time: %.3f\n", n, a / b }'
fi

# Load-independent view: both planners simulated from the same measured profile (each run's
# own action times, stages sharing this machine's cores); a measured ratio far from these
# comes from the machine's load drifting between runs, not from the order of actions.
if [[ -n "${MEASURED[adaptive]:-}" && -n "$best" ]]; then
  for profile in adaptive "$best_name"; do
    sim() {
      bazel-bin/tools/simulate --profile="$OUT/$profile.1.json" --planner="$1" --stages=4 \
        --microbatches=16 --layers="$LAYERS" --cores="$(nproc)" --steps=1 |
        sed -n 's/^step time \([0-9.]*\) \(m*s\).*/\1 \2/p' |
        awk '{print $2 == "s" ? $1 * 1000 : $1}'
    }
    awk -v a="$(sim adaptive)" -v b="$(sim "$best_name")" -v n="$best_name" -v p="$profile" \
      'BEGIN { printf "simulated from the %s run'"'"'s profile: adaptive %.1f ms, %s %.1f ms, ratio %.3f\n", p, a, n, b, a / b }'
  done
fi

# auto (tools/launch --planner=auto: picks by simulation, re-plans from its own trace) against
# the best measured planner.
if [[ -n "${MEASURED[auto]:-}" ]]; then
  all_best="" all_best_name=""
  for p in "${!MEASURED[@]}"; do
    [[ "$p" != auto ]] || continue
    t=${MEASURED[$p]}
    if [[ -z "$all_best" ]] || awk "BEGIN{exit !($t < $all_best)}"; then all_best=$t all_best_name=$p; fi
  done
  awk -v a="${MEASURED[auto]}" -v b="$all_best" -v n="$all_best_name" \
    'BEGIN { printf "auto measured median / best measured (%s): %.3f\n", n, a / b }'
fi
echo "traces in $OUT"
