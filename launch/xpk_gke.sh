#!/usr/bin/env bash
# TPU slices on GKE through xpk: one JobSet pod per TPU VM, all running the same command;
# jax.distributed.initialize() (JAXFT_DISTRIBUTED=1) finds the peers from the pod environment.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/xpk_gke.sh --cluster=C --workload=W --tpu-type=T --config=configs/X.py --workdir=DIR
                         (--docker-image=IMG | --base-docker-image=IMG) [options] [-- TRAIN_FLAGS]

  --cluster=NAME            xpk/GKE cluster                                        (required)
  --workload=NAME           workload (job) name, lowercase letters, digits and -    (required)
  --tpu-type=TYPE           e.g. v5litepod-16, v4-32, v5p-64                       (required)
  --config=PATH             config file[:ARG], relative to the repo root           (required)
  --workdir=DIR             run directory all pods share (e.g. a gcsfuse/Filestore mount) (required)
  --docker-image=IMG        image that already holds jaxft and jax[tpu]; or
  --base-docker-image=IMG   image with jax[tpu]; xpk adds this repo (--script-dir) and the job installs it
  --num-slices=N            TPU slices (default: 1)
  --project=P --zone=Z      passed to xpk
  --python=BIN              python in the image (default: python3)
  --dry-run                 print the command instead of running it
  TRAIN_FLAGS               passed on to `python -m jaxft.train`
USAGE
}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

opt_cluster='' opt_workload='' opt_tpu_type='' opt_config='' opt_workdir='' opt_docker_image=''
opt_base_docker_image='' opt_num_slices=1 opt_project='' opt_zone='' opt_python=python3
parse_args 'cluster workload tpu-type config workdir docker-image base-docker-image num-slices project zone python' \
  '' "$@"
require_opts cluster workload tpu-type config workdir
[[ -f $ROOT/${opt_config%%:*} ]] || die "config '${opt_config%%:*}' not found under $ROOT (give it relative to the repo root)"
[[ $opt_workload =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die "--workload=$opt_workload: use lowercase letters, digits and -"
if [[ -n $opt_docker_image && -n $opt_base_docker_image ]] || [[ -z $opt_docker_image$opt_base_docker_image ]]; then
  die "give exactly one of --docker-image and --base-docker-image"
fi

XPK=(xpk workload create --cluster="$opt_cluster" --workload="$opt_workload" --tpu-type="$opt_tpu_type"
     --num-slices="$opt_num_slices")
[[ -n $opt_project ]] && XPK+=(--project="$opt_project")
[[ -n $opt_zone ]] && XPK+=(--zone="$opt_zone")
TRAIN=$(words JAXFT_DISTRIBUTED=1 "$opt_python" -m jaxft.train --config="$opt_config" --workdir="$opt_workdir" \
  ${EXTRA[@]+"${EXTRA[@]}"})
if [[ -n $opt_docker_image ]]; then
  XPK+=(--docker-image="$opt_docker_image")
else  # xpk copies --script-dir into the image's working directory
  XPK+=(--base-docker-image="$opt_base_docker_image" --script-dir="$ROOT")
  TRAIN="$opt_python -m pip install -q -e . && $TRAIN"
fi
run "${XPK[@]}" --command="$TRAIN"
