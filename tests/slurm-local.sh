#!/usr/bin/env bash
# (A copy of the workplace's shared/scripts/slurm-local.sh, so a clean clone runs the Slurm tests: tests/test_slurm.py.)
# Starts a one-node Slurm on this machine (Debian slurm-wlm; root; auth/none; the node's CPUs; no accounting)
# when none answers, and exports SLURM_CONF. Source it: `source ../shared/scripts/slurm-local.sh`.
# Stop it with: kill "$(cat "$SLURM_LOCAL_DIR"/slurmctld.pid)" "$(cat "$SLURM_LOCAL_DIR"/slurmd.pid)" (SLURM_LOCAL_DIR defaults to $TMPDIR/slurm-local)
SLURM_LOCAL_DIR=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/slurm-local}
command -v slurmctld >/dev/null || { apt-get install -y -qq slurm-wlm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq slurm-wlm; } >/dev/null 2>&1; }
command -v slurmctld >/dev/null || { echo "slurm-wlm not installable" >&2; return 1 2>/dev/null || exit 1; }
export SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf
if ! timeout 5 sinfo -h >/dev/null 2>&1; then
  mkdir -p $SLURM_LOCAL_DIR/state $SLURM_LOCAL_DIR/spool $SLURM_LOCAL_DIR/log
  H=$(hostname -s)
  cat > $SLURM_CONF <<CONF
ClusterName=local
SlurmctldHost=$H
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldPidFile=$SLURM_LOCAL_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_LOCAL_DIR/slurmd.pid
SlurmdSpoolDir=$SLURM_LOCAL_DIR/spool
StateSaveLocation=$SLURM_LOCAL_DIR/state
SlurmUser=root
SlurmdUser=root
SlurmctldLogFile=$SLURM_LOCAL_DIR/log/ctld.log
SlurmdLogFile=$SLURM_LOCAL_DIR/log/d.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$H CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
  (slurmctld -D -f $SLURM_CONF > $SLURM_LOCAL_DIR/log/ctld.out 2>&1 &); (slurmd -D -f $SLURM_CONF > $SLURM_LOCAL_DIR/log/d.out 2>&1 &)
  for i in $(seq 20); do timeout 5 sinfo -h 2>/dev/null | grep -q idle && break; sleep 1; done
fi
