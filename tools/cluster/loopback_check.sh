#!/usr/bin/env bash
# loopback_check: runs the two multi-host launch paths for real on one machine and checks
# that both give bitwise the parameters of `launch --nprocs=4`:
#   1. --hostfile over ssh: an sshd on 127.0.0.2, reached as host "node-b" (so the launcher
#      treats it as another host and starts ranks 2 and 3 through ssh);
#   2. Slurm: a one-node slurmctld + slurmd (with munge), workers started by `srun`.
# It changes the machine (installs openssh-server, slurm-wlm and munge; adds "node-b" to
# /etc/hosts; starts sshd, munged, slurmctld and slurmd; writes /etc/slurm/slurm.conf if
# there is none), so it is not part of `./bazelw test //...`: run it as root on a scratch
# machine or container. Usage: tools/cluster/loopback_check.sh [steps, default 20]
set -euo pipefail

STEPS="${1:-20}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d /tmp/stagehand_loopback.XXXXXX)"
if [[ $(id -u) -ne 0 ]]; then
  echo "loopback_check: must run as root (it starts sshd and Slurm daemons)" >&2
  exit 2
fi

cd "$ROOT"
./bazelw build //tools:launch //tools:worker >&2
BIN="$(./bazelw info bazel-bin 2>/dev/null)/tools"

missing=()
for p in openssh-server slurm-wlm munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "loopback_check: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The reference: four local workers.
common=(--stages=4 --planner=1f1b --steps="$STEPS")
"$BIN/launch" --nprocs=4 "${common[@]}" --save_params="$WORK/local.safetensors" >"$WORK/local.log" 2>&1

same_as_local() {  # stem
  local ok=0
  for r in 0 1 2 3; do
    if cmp -s "$WORK/local.rank$r.safetensors" "$WORK/$1.rank$r.safetensors"; then
      echo "  rank $r parameters: bitwise equal to --nprocs=4"
    else
      echo "  rank $r parameters: DIFFER from --nprocs=4"; ok=1
    fi
  done
  return $ok
}

# 1. ssh: key login to node-b = 127.0.0.2.
mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh
[[ -f /root/.ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_ed25519
grep -qF "$(cat /root/.ssh/id_ed25519.pub)" /root/.ssh/authorized_keys 2>/dev/null ||
  cat /root/.ssh/id_ed25519.pub >>/root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
grep -q " node-b$" /etc/hosts || echo "127.0.0.2 node-b" >>/etc/hosts
ssh-keygen -A >/dev/null
if ! ssh -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=accept-new node-b true 2>/dev/null; then
  /usr/sbin/sshd -o ListenAddress=127.0.0.2 -o PermitRootLogin=prohibit-password
  sleep 1
  ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new node-b true
fi
printf 'localhost slots=2\nnode-b slots=2\n' >"$WORK/hosts.txt"
echo "== --hostfile: ranks 0-1 on localhost, ranks 2-3 over ssh on node-b"
"$BIN/launch" --hostfile="$WORK/hosts.txt" --bind=0.0.0.0 "${common[@]}" \
  --save_params="$WORK/ssh.safetensors" 2>&1 | tee "$WORK/ssh.log" | tail -3
status=0
same_as_local ssh || status=1

# 2. Slurm: one node (this host), four tasks on its cores.
HOST="$(hostname)"
CPUS="$(nproc)"
if [[ ! -f /etc/slurm/slurm.conf ]]; then
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=loopback
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
fi
if ! munge -n >/dev/null 2>&1; then
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  [[ -f /etc/munge/munge.key ]] || mungekey -c -k /etc/munge/munge.key
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  sleep 1
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
echo "== srun --ntasks=4: ranks and peers from SLURM_*"
STAGEHAND_JOIN_TOKEN="$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  srun --overcommit --ntasks=4 --label "$BIN/worker" "${common[@]}" \
  --save_params="$WORK/slurm.safetensors" 2>&1 | tee "$WORK/slurm.log" | grep -v " step " | tail -4
same_as_local slurm || status=1

echo "logs and parameters in $WORK"
exit $status
