#!/usr/bin/env bash
# End-to-end: packed documents with variable-length microbatches (--packing=documents
# --reset_position_ids --seq_len_policy=variable) stopped with --exit_after and resumed equal
# one uninterrupted run byte for byte (final checkpoints and step losses), in one process and
# on 4 worker processes; bad flag combinations are refused naming the flags. Not a parity test.
set -euo pipefail
BIN="${TEST_SRCDIR}/${TEST_WORKSPACE}/tools"
T="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 1 300); do echo "line $i: the quick brown fox jumps over the lazy dog."; done > "$T/corpus.txt"
FLAGS=(--data="$T/corpus.txt" --layers=4 --d_model=32 --heads=2 --seq_len=16 --micro_batch_size=2
       --microbatches=4 --stages=4 --steps=6 --eval_every=3 --eval_batches=2 --lr=3e-3
       --packing=documents --reset_position_ids --document_separator='\n'
       --seq_len_policy=variable --microbatch_tokens=24)
losses() { grep -oE "(^|] )step [4-6] (loss|held-out loss) [0-9.]+" "$1" | sed "s/^] //"; }

for layout in "" "--nprocs=4"; do
  echo "== uninterrupted and resumed runs ${layout:-in one process}"
  rm -rf "$T/a" "$T/b"
  "$BIN/launch" "${FLAGS[@]}" $layout --worker="$BIN/worker" --checkpoint_dir="$T/a" > "$T/a.out" 2>&1 \
    || { cat "$T/a.out"; fail "run a ($layout)"; }
  grep -q "x T_m tokens (--seq_len_policy=variable: T_m in \[1, 12\], --microbatch_tokens=24)" \
    "$T/a.out" || { cat "$T/a.out"; fail "no variable-length startup line ($layout)"; }
  "$BIN/launch" "${FLAGS[@]}" $layout --worker="$BIN/worker" --checkpoint_dir="$T/b" \
    --checkpoint_every=3 --exit_after=3 > "$T/b1.out" 2>&1 || { cat "$T/b1.out"; fail "run b1"; }
  "$BIN/launch" "${FLAGS[@]}" $layout --worker="$BIN/worker" --checkpoint_dir="$T/b" --resume \
    > "$T/b2.out" 2>&1 || { cat "$T/b2.out"; fail "run b2 ($layout)"; }
  grep -q "resumed from .*step_00000003" "$T/b2.out" || { cat "$T/b2.out"; fail "no resume"; }
  for f in "$T"/a/step_00000006/*; do
    cmp "$f" "$T/b/step_00000006/$(basename "$f")" || fail "$(basename "$f") differs ($layout)"
  done
  [[ $(losses "$T/a.out" | wc -l) -eq 4 ]] || { cat "$T/a.out"; fail "missing step lines"; }
  diff <(losses "$T/a.out") <(losses "$T/b2.out") || fail "step losses differ ($layout)"
done

echo "== refused combinations name the flags"
expect_error() {
  if "$BIN/launch" "${@:2}" --steps=1 > "$T/e.out" 2>&1; then fail "accepted: ${*:2}"; fi
  grep -qF -- "$1" "$T/e.out" || { cat "$T/e.out"; fail "no '$1' for: ${*:2}"; }
}
expect_error "--seq_len_policy=sometimes: choose fixed or variable" --seq_len_policy=sometimes
expect_error "--microbatch_tokens=64 needs --seq_len_policy=variable" --microbatch_tokens=64
expect_error "--seq_len_policy=variable needs --microbatch_tokens" --seq_len_policy=variable
expect_error "--microbatch_tokens=3 is below the micro batch size 4" --seq_len_policy=variable \
  --microbatch_tokens=3
echo PASS
