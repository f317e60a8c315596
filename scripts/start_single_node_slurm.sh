#!/usr/bin/env bash
# A one-node Slurm on this machine (Debian), to try launcher=slurm for real:
#   sudo bash scripts/start_single_node_slurm.sh
#   ftorch train -m recipe=quickstart sweep=lr_rank launcher=slurm hydra.launcher.partition=debug \
#       hydra.launcher.gpus_per_node=0 hydra.launcher.mem_gb=2 hydra.launcher.cpus_per_task=1
# Run as root (the daemons and the config need it). Used for tests/e2e/test_sweeps.py's Slurm test.
set -euo pipefail
command -v slurmctld >/dev/null || apt-get install -y -q slurm-wlm
host=$(hostname)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ftorch
SlurmctldHost=${host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=$(nproc) RealMemory=$(( $(free -m | awk '/Mem:/ {print $2}') / 2 )) State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -f /etc/munge/munge.key ]; then
  mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chmod 400 /etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /run/munge
pgrep -x munged >/dev/null || /usr/sbin/munged --force
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
sleep 2
sinfo
