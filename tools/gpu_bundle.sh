#!/usr/bin/env bash
# gpu_bundle.sh: builds the GPU checks with --config=cuda and packs them, with the shared
# libraries they need, into one folder that runs on a GPU node without Bazel or our Debian
# libraries. Not an installer: the node provides the driver (libcuda), cuBLASLt and NCCL, which
# the bundle's run_gpu_checks.sh finds there.
#
# Usage: tools/gpu_bundle.sh [OUTPUT_DIR]     (default: out/gpu_bundle, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-out/gpu_bundle}"
LIMIT_BYTES=$((64 * 1024 * 1024))

# 1. Build every GPU test and GPU benchmark (tag "gpu") under --config=cuda.
mapfile -t TARGETS < <(./bazelw query 'attr(tags, "\bgpu\b", kind("cc_(test|binary)", //...))' 2>/dev/null)
if ((${#TARGETS[@]} == 0)); then
  echo "gpu_bundle: no targets tagged gpu" >&2
  exit 1
fi
# The launcher and its worker too: run_gpu_checks.sh trains with them (CPU against GPU, stages
# against one, workers against one process).
./bazelw build --config=cuda "${TARGETS[@]}" //tools:launch //tools:worker >&2

# 2. Copy the binaries.
# Symbols are stripped (the bundle must stay under 64 MiB); tests print their own failures.
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/tools"
BIN_DIR="$(./bazelw info --config=cuda bazel-bin 2>/dev/null)"
for target in "${TARGETS[@]}"; do
  path="${target#//}"
  path="${path/://}"
  install -m 0755 -s "$BIN_DIR/$path" "$OUT/bin/"
done
install -m 0755 -s "$BIN_DIR/tools/launch" "$OUT/tools/launch"
# run_gpu_checks.sh puts a tools/worker beside launch that starts this one with the bundle's
# libraries (and loader, where it uses one).
install -m 0755 -s "$BIN_DIR/tools/worker" "$OUT/tools/worker.bin"
install -m 0644 tools/torch_gpt2_step.py "$OUT/tools/torch_gpt2_step.py"
TARGETS+=("//tools:launch" "//tools:worker")

# 3. Copy every shared library they load (as ldd resolves it here), except what the node must
# provide: the driver (libcuda, libnvidia-*), cuBLAS/cuBLASLt and NCCL (hundreds of MiB, and
# matched to the node's driver). glibc (libc, libm, the loader) is copied too, so that a node
# with an older glibc can run the binaries through the bundled loader.
is_left_out() {
  case "$1" in
    libcuda.so*|libnvidia-*|libcublas.so*|libcublasLt.so*|libnccl.so*|linux-vdso.so*) return 0 ;;
    *) return 1 ;;
  esac
}
declare -A COPIED=()
for target in "${TARGETS[@]}"; do
  path="${target#//}"
  binary="$BIN_DIR/${path/://}"  # ldd from where Bazel's relative RUNPATH resolves
  while read -r name path; do
    if [[ -z "$path" || "$path" == "not" ]]; then
      echo "gpu_bundle: $binary needs $name, which ldd cannot find" >&2
      is_left_out "$name" || exit 1
      continue
    fi
    is_left_out "$name" && continue
    [[ -n "${COPIED[$name]:-}" ]] && continue
    cp -L "$path" "$OUT/lib/$name"
    COPIED[$name]=1
  done < <(ldd "$binary" | awk '/=>/ {print $1, $3} /ld-linux/ && !/=>/ {n=$1; sub(".*/", "", n); print n, $1}')
done
chmod -R u+w "$OUT/lib"
# The libraries travel compressed (OpenBLAS alone is 36 MiB); run_gpu_checks.sh unpacks them.
tar czf "$OUT/lib.tar.gz" -C "$OUT" lib
rm -rf "$OUT/lib"

# 4. The runner, and what the bundle was built from.
install -m 0755 tools/run_gpu_checks.sh "$OUT/run_gpu_checks.sh"
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "nvcc: $(/usr/local/cuda/bin/nvcc --version | tail -1)"
  echo "glibc: $(ldd --version | head -1 | awk '{print $NF}')"
  echo "needs from the node: driver for CUDA 13 (libcuda.so.1), libcublasLt.so.13, libnccl.so.2"
} > "$OUT/BUILD_INFO"

size=$(du -sb "$OUT" | cut -f1)
echo "gpu_bundle: $OUT: ${#TARGETS[@]} checks, $((size / 1024 / 1024)) MiB" >&2
if ((size > LIMIT_BYTES)); then
  echo "gpu_bundle: the bundle is over 64 MiB" >&2
  exit 1
fi
