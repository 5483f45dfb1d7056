#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: every worker runs the same command (--worker=all) and
# jax.distributed.initialize() (JAXFT_DISTRIBUTED=1) finds its peers from the TPU metadata.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh --tpu-name=NAME --zone=ZONE --config=configs/X.py --workdir=DIR [options] [-- TRAIN_FLAGS]

  --tpu-name=NAME          TPU VM (or queued resource) name                           (required)
  --zone=ZONE              e.g. us-west4-a                                            (required)
  --config=PATH            config file, relative to the repo root                     (required)
  --workdir=DIR            run directory; must be shared by all workers (NFS, gcsfuse) (required)
  --create                 create the TPU VM first (needs --accelerator-type, --version)
  --queued                 create it through a queued resource and wait until ACTIVE (same needs)
  --accelerator-type=TYPE  e.g. v5litepod-16, v4-32, v5p-64
  --version=VERSION        TPU software version, e.g. v2-alpha-tpuv5-lite, tpu-ubuntu2204-base
  --setup                  copy the committed repo (git archive HEAD) to every worker and pip-install it
  --project=PROJECT        gcloud project (default: gcloud's configured one)
  --spot                   spot capacity (with --create / --queued)
  --repo-dir=DIR           repo location on the workers (default: ~/jaxft)
  --python=BIN             python on the workers (default: python3)
  --dry-run                print the commands instead of running them
  TRAIN_FLAGS              passed on to `python -m jaxft.train`, e.g. --config.total_steps=100
EOF
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

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DRY_RUN=0 CREATE=0 QUEUED=0 SETUP=0 SPOT=0 EXTRA=()
opt_tpu_name='' opt_zone='' opt_config='' opt_workdir='' opt_accelerator_type='' opt_version=''
opt_project='' opt_repo_dir='~/jaxft' opt_python=python3
while (($#)); do
  case $1 in
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --create) CREATE=1 ;;
    --queued) QUEUED=1 ;;
    --setup) SETUP=1 ;;
    --spot) SPOT=1 ;;
    --tpu-name=*|--zone=*|--config=*|--workdir=*|--accelerator-type=*|--version=*|--project=*|--repo-dir=*|--python=*)
      key=${1%%=*}; key=${key#--}; printf -v "opt_${key//-/_}" '%s' "${1#*=}" ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift
done

for name in tpu-name zone config workdir; do
  var="opt_${name//-/_}"; [[ -n ${!var} ]] || die "missing --$name"
done
[[ -f $ROOT/$opt_config ]] || die "config '$opt_config' not found under $ROOT (give it relative to the repo root)"
((CREATE && QUEUED)) && die "--create and --queued exclude each other"
if ((CREATE || QUEUED)); then
  [[ -n $opt_accelerator_type ]] || die "missing --accelerator-type (needed to create the TPU)"
  [[ -n $opt_version ]] || die "missing --version (needed to create the TPU)"
fi

G=(--zone="$opt_zone")
[[ -n $opt_project ]] && G+=(--project="$opt_project")
SPOT_FLAG=()
((SPOT)) && SPOT_FLAG=(--spot)

if ((CREATE)); then
  run gcloud compute tpus tpu-vm create "$opt_tpu_name" "${G[@]}" --accelerator-type="$opt_accelerator_type" \
    --version="$opt_version" ${SPOT_FLAG[@]+"${SPOT_FLAG[@]}"}
fi
if ((QUEUED)); then
  run gcloud compute tpus queued-resources create "$opt_tpu_name" --node-id="$opt_tpu_name" "${G[@]}" \
    --accelerator-type="$opt_accelerator_type" --runtime-version="$opt_version" ${SPOT_FLAG[@]+"${SPOT_FLAG[@]}"}
  STATE=(gcloud compute tpus queued-resources describe "$opt_tpu_name" "${G[@]}" --format='value(state.state)')
  if ((DRY_RUN)); then
    echo "# repeat until it prints ACTIVE: $(words "${STATE[@]}")"
  else
    until [[ $("${STATE[@]}") == ACTIVE ]]; do echo "waiting for $opt_tpu_name to become ACTIVE..."; sleep 60; done
  fi
fi

SSH=(gcloud compute tpus tpu-vm ssh "$opt_tpu_name" "${G[@]}" --worker=all)
if ((SETUP)); then
  TARBALL=/tmp/jaxft-$opt_tpu_name.tar.gz
  run git -C "$ROOT" archive --format=tar.gz -o "$TARBALL" HEAD
  run gcloud compute tpus tpu-vm scp "$TARBALL" "$opt_tpu_name:jaxft.tar.gz" "${G[@]}" --worker=all
  INSTALL="$opt_python -m pip install -q -U 'jax[tpu]' -e $opt_repo_dir"
  run "${SSH[@]}" --command="mkdir -p $opt_repo_dir && tar -xzf jaxft.tar.gz -C $opt_repo_dir && $INSTALL"
fi

TRAIN=$(words JAXFT_DISTRIBUTED=1 "$opt_python" -m jaxft.train --config="$opt_config" --workdir="$opt_workdir" \
  ${EXTRA[@]+"${EXTRA[@]}"})
run "${SSH[@]}" --command="cd $opt_repo_dir && $TRAIN"
