#!/usr/bin/env bash
# torch_parity: our model against a plain PyTorch float64 reference (tools/torch_reference.py)
# on one batch, for the Llama-style and heterogeneous example configs: prints both losses and
# their relative difference, and fails above 1e-5. Installs Debian's python3-torch if needed.
# Usage: tools/torch_parity.sh [config.json ...] (default: the two examples).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=tools/ensure_torch.sh
source "$(dirname "$0")/ensure_torch.sh"
cd "$ROOT"
./bazelw build //tools:reference_batch >&2
TOOL="$(./bazelw info bazel-bin 2>/dev/null)/tools/reference_batch"
CONFIGS=("$@")
if [[ ${#CONFIGS[@]} -eq 0 ]]; then
  CONFIGS=(models/configs/llama_small.json models/configs/heterogeneous.json)
fi
status=0
for config in "${CONFIGS[@]}"; do
  dir="$(mktemp -d)"
  ours="$("$TOOL" --model_config="$config" --out="$dir")"
  theirs="$("$PYTHON" tools/torch_reference.py "$dir")"
  ours64="$(awk '{ print $4 }' <<<"$ours")"
  ours32="$(awk '{ print $6 }' <<<"$ours")"
  torch64="$(awk '{ print $4 }' <<<"$theirs")"
  verdict="$(awk -v a="$ours64" -v b="$torch64" -v f="$ours32" 'BEGIN {
      d = (a - b) / b; if (d < 0) d = -d; e = (f - b) / b; if (e < 0) e = -e;
      printf "relative difference float64 %.2e, float32 %.2e: %s", d, e, (d <= 1e-5 ? "match" : "MISMATCH") }')"
  printf '%-36s stagehand %s  torch %s  %s\n' "$config" "$ours64" "$torch64" "$verdict"
  [[ "$verdict" == *MISMATCH* ]] && status=1
  rm -rf "$dir"
done
exit $status
