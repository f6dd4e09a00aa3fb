#!/usr/bin/env bash
# Stop what ci/slurm_up.sh started, each daemon by its pid file (slurmd, slurmctld, slurmdbd, MariaDB, munged).
set -uo pipefail
DIR=${RESQ_SLURM_DIR:-/var/tmp/resq-slurm}
for pidfile in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" "$DIR/run/slurmdbd.pid" /run/mysqld/mariadbd.pid \
        /run/munge/munged.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
done
echo "slurm_down: stopped"
