#!/usr/bin/env bash
# Bring up a single-node SLURM cluster with accounting (slurmctld, slurmd, munge, slurmdbd on MariaDB)
# on this machine, from Debian's packages, without systemd. Needs root. Stop it with ci/slurm_down.sh.
# Accounting matters: without slurmdbd a job that SLURM cancels leaves submitit waiting forever.
# State, logs and pid files go under $RESQ_SLURM_DIR (default /var/tmp/resq-slurm).
set -euo pipefail
DIR=${RESQ_SLURM_DIR:-/var/tmp/resq-slurm}
if [ "$(id -u)" != 0 ]; then
    echo "slurm_up: needs root to install and start SLURM; the SLURM test will skip" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
fi

wait_for() {  # wait_for <seconds> <what> <command...>
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "slurm_up: $what did not come up within ${seconds}s; logs in $DIR/log" >&2
    exit 1
}

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)  # scheduling only (no cgroups)
mkdir -p "$DIR"/{state,spool,log,run}

# munge: the package made /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
fi
wait_for 10 munged munge -n

# MariaDB for slurmdbd, on its default socket (where slurmdbd's StorageHost=localhost looks)
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
SOCKET=/run/mysqld/mysqld.sock
if ! mariadb --socket="$SOCKET" -e "select 1" >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    runuser -u mysql -- mariadbd --datadir=/var/lib/mysql --socket="$SOCKET" --pid-file=/run/mysqld/mariadbd.pid \
        --skip-networking >"$DIR/log/mariadb.log" 2>&1 &
fi
wait_for 60 MariaDB mariadb --socket="$SOCKET" -e "select 1"
DB_PASS=resq-slurm-accounting
mariadb --socket="$SOCKET" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

mkdir -p /etc/slurm
cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
CONF
chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/slurm.conf <<CONF
ClusterName=resq
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# a cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s)
KillWait=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

if ! sacctmgr -n list cluster >/dev/null 2>&1; then
    slurmdbd
fi
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i -n add cluster resq >/dev/null 2>&1 || true
pgrep -F "$DIR/run/slurmctld.pid" slurmctld >/dev/null 2>&1 || slurmctld
pgrep -F "$DIR/run/slurmd.pid" slurmd >/dev/null 2>&1 || slurmd
node_idle() { sinfo -h -o %T | grep -qx idle; }
wait_for 60 "an idle node" node_idle
echo "slurm_up: cluster resq up on $HOST ($CPUS CPUs, ${MEM_MB} MB), accounting on; stop it with ci/slurm_down.sh"
