#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: every worker runs the same command (--worker=all) and
# jax.distributed.initialize() (JAXFT_DISTRIBUTED=1) finds its peers from the TPU metadata.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh --tpu-name=NAME --zone=ZONE --config=configs/X.py --workdir=DIR [options] [-- TRAIN_FLAGS]

  --tpu-name=NAME          TPU VM (or queued resource) name                           (required)
  --zone=ZONE              e.g. us-west4-a                                            (required)
  --config=PATH            config file[:ARG], relative to the repo root               (required)
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
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

opt_tpu_name='' opt_zone='' opt_config='' opt_workdir='' opt_accelerator_type='' opt_version=''
opt_project='' opt_repo_dir='~/jaxft' opt_python=python3
parse_args 'tpu-name zone config workdir accelerator-type version project repo-dir python' \
  'create=CREATE queued=QUEUED setup=SETUP spot=SPOT' "$@"

require_opts tpu-name zone config workdir
[[ -f $ROOT/${opt_config%%:*} ]] || die "config '${opt_config%%:*}' not found under $ROOT (give it relative to the repo root)"
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
