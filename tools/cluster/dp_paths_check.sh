#!/usr/bin/env bash
# --dp=2 --stages=2 through the three cluster paths on this host: --nprocs, --hostfile (all
# slots local, --bind=0.0.0.0), and the Slurm environment (SLURM_* set by hand, workers
# started directly: no slurmd here). Parameters of every rank compared byte for byte.
# Usage: tools/cluster/dp_paths_check.sh (exits 1 when any rank's parameters differ).
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
./bazelw build //tools:launch //tools:worker >&2
BIN="$(./bazelw info bazel-bin 2>/dev/null)/tools"
W="$(mktemp -d /tmp/stagehand_dp_paths.XXXXXX)"
F=(--dp=2 --stages=2 --layers=4 --d_model=32 --heads=2 --seq_len=16 --micro_batch_size=2 --microbatches=4 --steps=8 --log_every=4)
$BIN/launch --nprocs=4 "${F[@]}" --save_params=$W/nprocs.safetensors > $W/nprocs.log 2>&1; echo "--nprocs=4: exit $?"
printf 'localhost slots=4\n' > $W/hosts.txt
$BIN/launch --hostfile=$W/hosts.txt --bind=0.0.0.0 "${F[@]}" --save_params=$W/hostfile.safetensors > $W/hostfile.log 2>&1; echo "--hostfile (4 local slots, --bind=0.0.0.0): exit $?"
TOKEN=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT=$((20000 + RANDOM % 20000))
pids=()
for r in 0 1 2 3; do
  STAGEHAND_JOIN_TOKEN=$TOKEN SLURM_PROCID=$r SLURM_NTASKS=4 SLURM_JOB_NODELIST=$(hostname) STAGEHAND_PORT=$PORT \
    $BIN/worker "${F[@]}" --save_params=$W/slurm.safetensors > $W/slurm.rank$r.log 2>&1 &
  pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait $p || rc=1; done; echo "Slurm environment (4 workers by hand): exit $rc"
status=0
for mode in hostfile slurm; do
  for r in 0 1 2 3; do
    if cmp -s $W/nprocs.rank$r.safetensors $W/$mode.rank$r.safetensors; then
      echo "  $mode rank $r parameters: bitwise equal to --nprocs=4"
    else
      echo "  $mode rank $r parameters: DIFFER from --nprocs=4"; status=1
    fi
  done
done
echo "logs and parameters in $W"
exit $status
