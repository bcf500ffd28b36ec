#!/usr/bin/env bash
# The benchmark table of issue 15: every registered planner simulated at P=8, M=32 under the
# same memory cap, with no jitter, 20% uniform op-time jitter, and one 1.3x straggler stage;
# adaptive's mean step time against the best of zb_h2, zb_v and dualpipe_v (and of every
# static planner), and the bound: the busiest stage's compute under adaptive's placement, which
# no order of the same actions beats (a ratio goal below bound / best static is out of reach).
# Simulated (tools/simulate), not measured: see tools/slow_stage_bench.sh.
#
# --memory_cap_gb takes a comma-separated list and prints one table per cap (default 70,30: a cap
# where every zero-bubble planner fits, and one where memory binds and only adaptive and zb_h2 run).
#
#   tools/simulate_table.sh [--model=gpt2_xl] [--device=h200] [--memory_cap_gb=70,30] [--steps=8]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=gpt2_xl DEVICE=h200 CAPS=70,30 STEPS=8 SEED=1
for arg in "$@"; do
  case "$arg" in
    --model=*) MODEL="${arg#*=}" ;;
    --device=*) DEVICE="${arg#*=}" ;;
    --memory_cap_gb=*) CAPS="${arg#*=}" ;;
    --steps=*) STEPS="${arg#*=}" ;;
    --seed=*) SEED="${arg#*=}" ;;
    *) echo "simulate_table.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
./bazelw build //tools:simulate >&2
SIM=bazel-bin/tools/simulate

# One table (and its ratio lines) at memory cap $1 GB.
table() {
local CAP="$1"
local COMMON=(--model="$MODEL" --device="$DEVICE" --stages=8 --microbatches=32 --memory_cap_gb="$CAP"
        --steps="$STEPS" --seed="$SEED")

echo "P=8 M=32, model $MODEL on $DEVICE, memory cap $CAP GB per stage, $STEPS steps (mean step time, ms)"
local -A RESULT
SCENARIOS=("no jitter|" "20% jitter|--jitter=uniform:0.2" "straggler s3 1.3x|--straggler=3:1.3")
for scenario in "${SCENARIOS[@]}"; do
  name="${scenario%%|*}" flag="${scenario#*|}"
  # auto ranks every planner: "  NAME   123.456 ms" per line.
  while read -r planner time unit; do
    [[ "$unit" == "ms" ]] || continue
    RESULT["$name|$planner"]="$time"
  done < <($SIM "${COMMON[@]}" $flag --planner=auto | sed -n '/^auto: every planner/,/^auto picked/p')
  # adaptive's own report: the busiest stage's compute, the bound no order of its actions beats.
  RESULT["$name|bound"]=$($SIM "${COMMON[@]}" $flag --planner=adaptive |
                          sed -n 's/^busiest stage s[0-9]* computes \([0-9.]*\) ms.*/\1/p')
done

planners=$($SIM --list_planners | awk '{print $1}')
printf "%-14s" "planner"
for scenario in "${SCENARIOS[@]}"; do printf " %20s" "${scenario%%|*}"; done
printf "\n"
for p in $planners; do
  printf "%-14s" "$p"
  for scenario in "${SCENARIOS[@]}"; do printf " %20s" "${RESULT["${scenario%%|*}|$p"]:--}"; done
  printf "\n"
done
for scenario in "${SCENARIOS[@]}"; do
  name="${scenario%%|*}"
  adaptive="${RESULT["$name|adaptive"]:-}"
  best_zb="" best_zb_name="" best_static="" best_static_name=""
  for p in $planners; do
    t="${RESULT["$name|$p"]:-}"
    [[ -n "$t" && "$p" != adaptive ]] || continue
    if [[ -z "$best_static" ]] || awk "BEGIN{exit !($t < $best_static)}"; then best_static=$t best_static_name=$p; fi
    case "$p" in zb_h2|zb_v|dualpipe_v)
      if [[ -z "$best_zb" ]] || awk "BEGIN{exit !($t < $best_zb)}"; then best_zb=$t best_zb_name=$p; fi ;;
    esac
  done
  awk -v n="$name" -v a="$adaptive" -v z="$best_zb" -v zn="$best_zb_name" -v s="$best_static" \
      -v sn="$best_static_name" -v b="${RESULT["$name|bound"]}" 'BEGIN {
    printf "%-18s adaptive / best of zb_h2,zb_v,dualpipe_v (%s) = %.3f; adaptive / best static (%s) = %.3f\n",
           n ":", zn, a / z, sn, a / s
    printf "%-18s bound: adaptive'"'"'s busiest stage computes %.3f ms = %.3f x best static; adaptive = %.3f x bound\n",
           "", b, b / s, a / b }'
done
}

IFS=, read -r -a CAP_LIST <<<"$CAPS"
for cap in "${CAP_LIST[@]}"; do
  table "$cap"
  echo
done
