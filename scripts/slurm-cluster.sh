#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian 12: Slurm 22.05, munge, slurmdbd + MariaDB for
# accounting), to try `snakemake --profile profiles/slurm` without a cluster and to test it.
#
#   scripts/slurm-cluster.sh start    # idempotent: starts only what is not running (as root)
#   scripts/slurm-cluster.sh env      # prints `export SLURM_CONF=...`: eval it before sbatch/snakemake
#   scripts/slurm-cluster.sh status
#   scripts/slurm-cluster.sh stop     # cancels leftover jobs, stops only the daemons it started
#
# Everything lives under $SOPHIA_SLURM_BASE (default ${TMPDIR:-/tmp}/sophia-slurm): configuration
# (SLURM_CONF points there; /etc/slurm and /etc/munge are never touched), the munge key,
# MariaDB data, state, logs and the daemons' PIDs. Ports are off the SLURM defaults, so a real
# installation on the same machine is left alone; only munged's socket is the default one
# (/run/munge), and a munged already serving it is used as is. Partitions `cpu` (default) and `gpu` share the
# one node, which declares one GPU (gres.conf without a device file) so that GPU requests can be
# checked with `sbatch --test-only`; jobs that really ask for it get no device.
# Packages: `make system` (slurm-wlm, munge, slurmdbd, mariadb-server).
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

BASE=${SOPHIA_SLURM_BASE:-${TMPDIR:-/tmp}/sophia-slurm}
PORT=${SOPHIA_SLURM_PORT:-16817}  # slurmctld; slurmd, slurmdbd and MariaDB take the next three
CLUSTER=sophia
MIN_MEM_MB=16384
ETC=$BASE/etc RUN=$BASE/run PIDS=$BASE/run/pids LOG=$BASE/log SPOOL=$BASE/spool DB=$BASE/db
export SLURM_CONF=$ETC/slurm.conf
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stop runs it backwards
T0=$(date +%s%N)

say() { printf '[slurm-cluster %5.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }
die() { echo "slurm-cluster: $*" >&2; exit 1; }

# A recorded PID counts only while it is that daemon and not a zombie (PID 1 may reap late).
alive() {
  local f=$PIDS/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$1" &&
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

launch() {  # launch NAME CMD...: in the background, its PID recorded, output to $LOG/NAME.out
  local name=$1; shift
  # own session: a signal to the caller's process group (timeout, Ctrl-C) does not reach it
  nohup setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  say "started $name (pid $!)"
}

wait_for() {  # wait_for SECONDS WHAT CMD...
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$what not ready after ${secs}s; see $LOG"
}

stop_daemon() {
  local name=$1 pid i
  alive "$name" || { rm -f "$PIDS/$name.pid"; return 0; }
  pid=$(<"$PIDS/$name.pid")
  kill -TERM "$pid"
  for ((i = 0; i < 60; i++)); do alive "$name" || break; sleep 0.25; done
  if alive "$name"; then kill -KILL "$pid"; say "$name ($pid) ignored TERM: killed"; else say "stopped $name ($pid)"; fi
  rm -f "$PIDS/$name.pid"
}

write_if_changed() {  # write_if_changed FILE < content; returns 0 when the file changed
  local new
  new=$(cat)
  [ -f "$1" ] && [ "$(<"$1")" = "$new" ] && return 1
  printf '%s\n' "$new" >"$1"
}

slurm_conf() {
  local host=$1 hw mem
  hw=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  mem=$(slurmd -C | head -1 | tr ' ' '\n' | sed -n 's/^RealMemory=//p')
  cat <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$RUN/slurmctld.daemon.pid
SlurmdPidFile=$RUN/slurmd.daemon.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups in containers and VMs without systemd: processes are tracked by /proc, and memory is
# enforced by the accounting sampler (every 2 s), which kills a step over its --mem.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# sacct shows the rule of each job (the executor plugin writes it into --comment)
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MailProg=/bin/true
# The node offers at least $MIN_MEM_MB MB (config_overrides: not checked against the hardware), so
# that the rules' requests (finetune: 8.3 GB) fit on a small machine; jobs use far less, and each is
# still held to its own --mem.
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 ${hw}RealMemory=$(( mem > MIN_MEM_MB ? mem : MIN_MEM_MB )) Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
}

# Slurm's clients reach munged only at its default socket (slurmdbd connections ignore AuthInfo in
# 22.05): a munged already serving it (the system's) is used as is, else ours is started there.
start_munge() {
  alive munged && return 0
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then say "using the munged already running"; return 0; fi
  if [ ! -s "$ETC/munge.key" ]; then
    mungekey --create --keyfile="$ETC/munge.key"
  fi
  chown munge:munge "$ETC/munge.key" && chmod 0400 "$ETC/munge.key"
  install -d -o munge -g munge -m 0755 /run/munge
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  # setpriv (not su) so that $! is munged itself
  launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
    --key-file="$ETC/munge.key" --pid-file="$RUN/munge/munged.pid" --log-file="$LOG/munge/munged.log" \
    --seed-file="$RUN/munge/munged.seed"
  wait_for 20 munged bash -c "munge -n | unmunge"
}

start_mariadb() {
  if ! alive mariadbd; then
    if [ ! -d "$DB/data/mysql" ]; then
      mariadb-install-db --no-defaults --user=mysql --datadir="$DB/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1
    fi
    launch mariadbd /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB/data" \
      --socket="$DB/mysqld.sock" --pid-file="$DB/mysqld.pid" --bind-address=127.0.0.1 \
      --port=$((PORT + 3)) --skip-name-resolve --innodb-buffer-pool-size=256M \
      --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
    wait_for 60 mariadbd mariadb --no-defaults -S "$DB/mysqld.sock" -uroot -e 'select 1'
  fi
  mariadb --no-defaults -S "$DB/mysqld.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(<"$ETC/db.pass")';
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  write_if_changed "$ETC/slurmdbd.conf" <<EOF || true
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.daemon.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$(<"$ETC/db.pass")
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$ETC/slurmdbd.conf" && chmod 0600 "$ETC/slurmdbd.conf"  # slurmdbd insists
  if ! alive slurmdbd; then
    launch slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

node_up() { sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated|completing)'; }

start() {
  [ "$(id -u)" = 0 ] || die "must run as root (daemons switch to the slurm, munge and mysql users)"
  local missing=()
  for b in slurmctld slurmd slurmdbd sbatch sacct munged mungekey mariadbd mariadb-install-db setpriv; do
    command -v "$b" >/dev/null || missing+=("$b")
  done
  [ ${#missing[@]} = 0 ] || die "missing ${missing[*]}: install slurm-wlm munge slurmdbd mariadb-server (make system)"
  install -d -m 0755 "$BASE" "$ETC" "$RUN" "$PIDS" "$SPOOL" "$SPOOL/slurmd" "$DB"
  install -d -o slurm -g slurm -m 0755 "$LOG" "$SPOOL/slurmctld"
  install -d -o munge -g munge -m 0700 "$RUN/munge" "$LOG/munge"
  chown mysql:mysql "$DB"
  [ -s "$ETC/db.pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$ETC/db.pass")

  local host changed=0
  host=$(hostname -s)
  slurm_conf "$host" | write_if_changed "$ETC/slurm.conf" && changed=1
  echo "NodeName=$host Name=gpu File=/dev/null Count=1" | write_if_changed "$ETC/gres.conf" && changed=1
  start_munge
  start_mariadb
  start_slurmdbd
  if [ $changed = 1 ]; then  # daemons must all read the same configuration
    stop_daemon slurmd
    stop_daemon slurmctld
  fi
  alive slurmctld || launch slurmctld slurmctld -D
  alive slurmd || launch slurmd slurmd -D
  if ! (wait_for 60 "node $host" node_up) 2>/dev/null; then
    scontrol update nodename="$host" state=resume 2>/dev/null || true  # left DOWN by an earlier run
    wait_for 30 "node $host" node_up
  fi
  wait_for 30 sacct sacct -n -X
  say "cluster '$CLUSTER' up: partitions cpu (default) and gpu; SLURM_CONF=$SLURM_CONF"
}

stop() {
  local i ids
  if alive slurmctld; then
    ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${ids// /}" ]; then scancel $ids || true; sleep 2; fi
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
}

status() {
  local rc=0
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then echo "$d running (pid $(<"$PIDS/$d.pid"))"; else echo "$d stopped"; rc=3; fi
  done
  [ $rc = 0 ] && sinfo
  return $rc
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
