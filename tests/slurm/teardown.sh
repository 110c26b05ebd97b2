#!/usr/bin/env bash
# Stop the daemons that tests/slurm/setup.sh started, and only those: the PIDs it recorded in
# $SLURM_CI_STATE/pids, newest first. Queued or running jobs are cancelled before slurmctld goes.
# Packages, /etc/slurm and /var/lib/slurm/gated-symile-ci stay (job ids continue next time).
set -uo pipefail

source "$(dirname "$0")/pids.sh"
[[ -f $PIDS ]] || exit 0

mapfile -t entries < <(tac "$PIDS")
for entry in "${entries[@]}"; do
    read -r name pid <<<"$entry"
    daemon_alive "$name" "${pid:-}" || continue
    if [[ $name == slurmctld ]]; then
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        [[ -n $jobs ]] && timeout 10 scancel $jobs 2>/dev/null
    fi
    kill -TERM "$pid"
    for _ in $(seq 100); do
        daemon_alive "$name" "$pid" || break
        sleep 0.1
    done
    if daemon_alive "$name" "$pid"; then
        echo "slurm-ci: $name ($pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid"
    fi
done
rm -f "$PIDS"
echo "slurm-ci: stopped" >&2
