#!/usr/bin/env bash
# One process on one machine that drives all of its accelerators (GPUs or a single-host TPU VM);
# the mesh comes from the config's mesh_shape, no jax.distributed needed.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/single_host.sh --config=configs/X.py --workdir=DIR [options] [-- TRAIN_FLAGS]

  --config=PATH   config file[:ARG]                                         (required)
  --workdir=DIR   run directory                                             (required)
  --gpus=LIST     GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES; default: all)
  --python=BIN    python to run (default: python3)
  --dry-run       print the command instead of running it
  TRAIN_FLAGS     passed on to `python -m jaxft.train`, e.g. --config.mesh_shape.fsdp=8
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

opt_config='' opt_workdir='' opt_gpus='' opt_python=python3
parse_args 'config workdir gpus python' '' "$@"
require_opts config workdir
[[ -f ${opt_config%%:*} ]] || die "config '${opt_config%%:*}' not found"
[[ -z $opt_gpus || $opt_gpus =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus=$opt_gpus: expected a list like 0,1,2,3"

CMD=("$opt_python" -m jaxft.train --config="$opt_config" --workdir="$opt_workdir" ${EXTRA[@]+"${EXTRA[@]}"})
[[ -n $opt_gpus ]] && CMD=(env CUDA_VISIBLE_DEVICES="$opt_gpus" "${CMD[@]}")
run "${CMD[@]}"
