#!/usr/bin/env bash
# One process on one machine that drives all of its accelerators (GPUs or a single-host TPU VM);
# the mesh comes from the config's mesh_shape, no jax.distributed needed.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/single_host.sh --config=configs/X.py --workdir=DIR [options] [-- TRAIN_FLAGS]

  --config=PATH   config file                                               (required)
  --workdir=DIR   run directory                                             (required)
  --gpus=LIST     GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES; default: all)
  --python=BIN    python to run (default: python3)
  --dry-run       print the command instead of running it
  TRAIN_FLAGS     passed on to `python -m jaxft.train`, e.g. --config.mesh_shape.fsdp=8
USAGE
}
die() { echo "error: $*" >&2; echo "see: $0 --help" >&2; exit 2; }
q() {  # one shell word, quoted only where needed (a --flag= prefix stays outside the quotes)
  local s=$1 pre=''
  if [[ $s =~ ^(--?[A-Za-z0-9_.-]+=)(.*)$ ]]; then pre=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]}; fi
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s%s' "$pre" "$s"
  elif [[ $s != *[\"\$\`\\!]* ]]; then printf '%s"%s"' "$pre" "$s"
  else printf "%s'%s'" "$pre" "${s//\'/\'\\\'\'}"; fi
}
words() { local out=() a; for a in "$@"; do out+=("$(q "$a")"); done; echo "${out[*]}"; }
run() { if ((DRY_RUN)); then words "$@"; else "$@"; fi; }

DRY_RUN=0 EXTRA=()
opt_config='' opt_workdir='' opt_gpus='' opt_python=python3
while (($#)); do
  case $1 in
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --config=*|--workdir=*|--gpus=*|--python=*) key=${1%%=*}; key=${key#--}; printf -v "opt_$key" '%s' "${1#*=}" ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift
done
[[ -n $opt_config ]] || die "missing --config"
[[ -n $opt_workdir ]] || die "missing --workdir"
[[ -f $opt_config ]] || die "config '$opt_config' not found"
[[ -z $opt_gpus || $opt_gpus =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus=$opt_gpus: expected a list like 0,1,2,3"

CMD=("$opt_python" -m jaxft.train --config="$opt_config" --workdir="$opt_workdir" ${EXTRA[@]+"${EXTRA[@]}"})
[[ -n $opt_gpus ]] && CMD=(env CUDA_VISIBLE_DEVICES="$opt_gpus" "${CMD[@]}")
run "${CMD[@]}"
