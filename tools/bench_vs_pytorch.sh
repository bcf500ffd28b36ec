#!/usr/bin/env bash
# bench_vs_pytorch: tokens/s of a whole GPT-2 124M float32 training step, Stagehand
# (//tools:train_step_benchmark) against PyTorch (tools/torch_gpt2_step.py), back to back in
# one run, at B=4 and T=64 and 256; prints a table with the ratio. Not a correctness check.
# Usage: tools/bench_vs_pytorch.sh [timed steps, default 3]. OPENBLAS_* is left as it is.
set -euo pipefail

STEPS="${1:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=tools/ensure_torch.sh
source "$(dirname "$0")/ensure_torch.sh"

cd "$ROOT"
./bazelw build //tools:train_step_benchmark >&2
# Asked of Bazel, not read through the bazel-bin link, which a build with another
# --output_base in this workspace repoints.
BENCHMARK="$(./bazelw info bazel-bin 2>/dev/null)/tools/train_step_benchmark"

# The figure after "tokens/s" on the line the tool prints to stdout.
tokens_per_second() { awk '/tokens\/s/ { print $NF }'; }

echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, B=4, ${STEPS} timed steps (median)" >&2
rows=()
for T in 64 256; do
  echo "T=$T: stagehand" >&2
  ours=$("$BENCHMARK" --seq_len="$T" --timed_steps="$STEPS" | tokens_per_second)
  echo "T=$T: pytorch" >&2
  theirs=$("$PYTHON" "$ROOT/tools/torch_gpt2_step.py" --seq_len="$T" --timed_steps="$STEPS" |
           tokens_per_second)
  rows+=("$T $ours $theirs")
done

printf '%-6s %16s %16s %8s\n' "T" "stagehand tok/s" "pytorch tok/s" "ratio"
for row in "${rows[@]}"; do
  read -r T ours theirs <<<"$row"
  printf '%-6s %16s %16s %8s\n' "$T" "$ours" "$theirs" \
    "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
done
