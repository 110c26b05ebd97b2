#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster for tests/test_slurm.py (Debian slurm-wlm + munge).
#
# No systemd: munged, slurmctld and slurmd are started directly and their PIDs recorded in
# $SLURM_CI_STATE/pids, which tests/slurm/teardown.sh reads to stop exactly these daemons.
# The node offers $SLURM_CI_GPUS stand-in GPUs (char devices aliasing /dev/null) so that
# `gpu: 1` jobs are really scheduled with --gpus=1; nothing may use CUDA on them.
# No accounting database: Snakemake must poll with `--slurm-status-command squeue`, which sees
# finished jobs for MinJobAge seconds (see tests/slurm/profile/profile.yaml).
#
# Idempotent: a cluster this script started and that still answers is left as it is.
# Exit codes: 0 cluster up; 3 cannot run here (not root, no apt-get, packages unobtainable),
# the reason on stderr; 1 anything else (a daemon did not start, the smoke test failed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/pids.sh"
GPUS=${SLURM_CI_GPUS:-2}
CLUSTER=gated-symile-ci # tests/test_slurm.py only runs against a cluster of this name
SPOOL=/var/lib/slurm/$CLUSTER
MARKER="# Written by tests/slurm/setup.sh"

say() { echo "slurm-ci: $*" >&2; }
unavailable() { say "unavailable: $*"; exit 3; }
fail() {
    say "error: $*"
    for log in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
        [[ -f $log ]] && { say "--- tail $log"; tail -n 15 "$log" >&2; }
    done
    exit 1
}

[[ $(id -u) -eq 0 ]] || unavailable "not root (the daemons and /etc/slurm need root)"
# Never rewrite a real cluster's configuration.
if [[ -f /etc/slurm/slurm.conf ]] && ! grep -qF "$MARKER" /etc/slurm/slurm.conf; then
    unavailable "/etc/slurm/slurm.conf exists and was not written by this script"
fi

cluster_answers() {
    [[ -s $PIDS ]] || return 1
    local name pid
    while read -r name pid; do daemon_alive "$name" "$pid" || return 1; done <"$PIDS"
    timeout 10 scontrol show slurmd >/dev/null 2>&1 \
        && timeout 10 sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'
}
if cluster_answers; then
    say "already running (pids in $PIDS)"
    exit 0
fi
# A half-started or stale cluster of ours: stop what is recorded, then start afresh.
[[ -e $PIDS ]] && "$HERE/teardown.sh"

# 1. Packages (only when missing; policy-rc.d keeps apt from starting services on its own).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || unavailable "apt-get not found (install slurm-wlm, munge)"
    export DEBIAN_FRONTEND=noninteractive
    say "installing slurm-wlm and munge"
    timeout 120 apt-get update -qq >&2 || unavailable "apt-get update failed (no package mirror?)"
    timeout 150 apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >&2 || unavailable "apt-get install failed"
fi

# 2. Stale PID files from a killed earlier run would make the daemons refuse to start.
rm -f /run/munge/munged.pid /run/slurm/slurmctld.pid /run/slurm/slurmd.pid
mkdir -p "$STATE"
: >"$PIDS"

# Wait until a forking daemon has written its PID file, then record it for teardown.
record_pid() {
    local name=$1 file=$2 pid=""
    for _ in $(seq 100); do
        [[ -s $file ]] && pid=$(<"$file") && [[ -n $pid ]] && break
        sleep 0.1
    done
    daemon_alive "$name" "$pid" || fail "$name did not start (no live PID in $file)"
    echo "$name $pid" >>"$PIDS"
}

# 3-5. munge: key, runtime directory, daemon as the munge user (unless one already works).
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey -c
    chown munge:munge /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    record_pid munged /run/munge/munged.pid
fi
munge -n | unmunge | grep -q 'Success' || fail "munge credential round trip failed"

# 4. Directories that systemd's RuntimeDirectory/StateDirectory would otherwise create.
for dir in /run/slurm "$SPOOL/ctld" "$SPOOL/d" /var/log/slurm; do
    install -d -o slurm -g slurm -m 0755 "$dir"
done

# 6. The node line from the hardware, pinned to 127.0.0.1, with 90 % of the memory.
HOST=$(hostname -s)
hardware=$(slurmd -C | head -n 1)
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
node_line="${hardware/RealMemory=$memory/RealMemory=$((memory * 9 / 10))} NodeAddr=127.0.0.1"

# 7. Stand-in GPUs: gres needs File= entries that are character devices.
gres=""
if ((GPUS > 0)); then
    mkdir -p "$STATE/dev"
    for ((i = 0; i < GPUS; i++)); do
        dev=$STATE/dev/nvidia$i
        [[ -c $dev ]] || { rm -f "$dev"; mknod "$dev" c 1 3 2>/dev/null || : >"$dev"; }
    done
    cat >/etc/slurm/gres.conf <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]
EOF
    gres=" Gres=gpu:$GPUS"
else
    rm -f /etc/slurm/gres.conf
fi
rm -f /etc/slurm/cgroup.conf

# 8. slurm.conf: no accounting; MinJobAge keeps finished jobs visible to squeue for 300 s.
cat >/etc/slurm/slurm.conf <<EOF
$MARKER (gated-symile CI): one node, no accounting database.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=300
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/none
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node_line$gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# 10. Daemons; both fork and write their PID file a moment later.
/usr/sbin/slurmctld
record_pid slurmctld /run/slurm/slurmctld.pid
/usr/sbin/slurmd
record_pid slurmd /run/slurm/slurmd.pid

# 11. Wait for the node; a node drained by an earlier bad registration is resumed once.
state=""
for i in $(seq 150); do
    state=$(timeout 5 sinfo -h -o %t 2>/dev/null | head -n 1 || true)
    [[ $state == idle ]] && break
    if [[ $i == 50 && $state == drain* ]]; then
        scontrol update nodename="$HOST" state=resume || true
    fi
    sleep 0.2
done
[[ $state == idle ]] || fail "node not idle (state '${state:-none}')"
timeout 30 srun -N1 hostname >/dev/null || fail "srun smoke test failed"
if ((GPUS > 0)); then
    timeout 30 srun --gpus=1 printenv CUDA_VISIBLE_DEVICES >/dev/null || fail "srun --gpus=1 failed"
fi
say "up: $(sinfo -h -o '%P %N %t cpus=%c mem=%m gres=%G')"
