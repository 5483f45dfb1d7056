#!/usr/bin/env bash
# Multi-node GPU training under SLURM: srun starts one process per GPU (or per node) and
# jax.distributed.initialize() (JAXFT_DISTRIBUTED=1) reads the SLURM variables to find its peers.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/slurm.sh --config=configs/X.py --workdir=DIR --nodes=N [options] [-- TRAIN_FLAGS]

  --config=PATH         config file[:ARG]                                         (required)
  --workdir=DIR         run directory on a filesystem all nodes share             (required)
  --nodes=N             number of nodes                                           (required)
  --gpus-per-node=G     GPUs per node (default: 8)
  --mode=per-gpu        one process per GPU (default); every task sees all G GPUs and JAX picks
                        GPU SLURM_LOCALID, so do not bind GPUs per task (no --gpus-per-task)
  --mode=per-node       one process per node driving its G GPUs (JAX_LOCAL_DEVICE_IDS=0..G-1)
  --partition=P --time=T --account=A   passed to sbatch
  --srun                run srun directly (inside an salloc allocation) instead of sbatch
  --python=BIN          python on the nodes (default: python3)
  --dry-run             print the commands instead of running them
  TRAIN_FLAGS           passed on to `python -m jaxft.train`
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

opt_config='' opt_workdir='' opt_nodes='' opt_gpus_per_node=8 opt_mode=per-gpu
opt_partition='' opt_time='' opt_account='' opt_python=python3
parse_args 'config workdir nodes gpus-per-node mode partition time account python' 'srun=SRUN' "$@"
require_opts config workdir nodes
[[ -f ${opt_config%%:*} ]] || die "config '${opt_config%%:*}' not found"
[[ $opt_nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes=$opt_nodes: expected a positive integer"
[[ $opt_gpus_per_node =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node=$opt_gpus_per_node: expected a positive integer"

ENV=(env JAXFT_DISTRIBUTED=1)
case $opt_mode in
  per-gpu) TASKS=$opt_gpus_per_node ;;
  per-node) TASKS=1; ENV+=(JAX_LOCAL_DEVICE_IDS="$(seq -s, 0 $((opt_gpus_per_node - 1)))") ;;
  *) die "--mode=$opt_mode: expected per-gpu or per-node" ;;
esac
LAYOUT=(--nodes="$opt_nodes" --ntasks-per-node="$TASKS" --gpus-per-node="$opt_gpus_per_node")
SRUN_CMD=(srun "${LAYOUT[@]}" --kill-on-bad-exit=1 "${ENV[@]}" "$opt_python" -m jaxft.train --config="$opt_config"
          --workdir="$opt_workdir" ${EXTRA[@]+"${EXTRA[@]}"})
if ((SRUN)); then
  run "${SRUN_CMD[@]}"
  exit 0
fi
SBATCH=(sbatch --job-name=jaxft "${LAYOUT[@]}" --output="$opt_workdir/slurm-%j.out")
[[ -n $opt_partition ]] && SBATCH+=(--partition="$opt_partition")
[[ -n $opt_time ]] && SBATCH+=(--time="$opt_time")
[[ -n $opt_account ]] && SBATCH+=(--account="$opt_account")
run mkdir -p "$opt_workdir"  # sbatch cannot create the --output directory
run "${SBATCH[@]}" --wrap="$(words "${SRUN_CMD[@]}")"
