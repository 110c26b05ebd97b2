# Sourced by setup.sh and teardown.sh: the PID record of the daemons setup.sh started.
STATE=${SLURM_CI_STATE:-/run/slurm-ci}
PIDS=$STATE/pids

# True while PID runs the named daemon: not gone, not a zombie (containers may lack an init
# that reaps them), and not reused by another program since it was recorded.
daemon_alive() {
    local name=$1 pid=$2 stat
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}
