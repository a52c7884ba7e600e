#!/usr/bin/env bash
# Cloud TPU VM (single host or pod slice): runs the same command on every worker; JAX detects the
# TPU topology and sets up jax.distributed itself.
#   launch/tpu_vm.sh TPU_NAME ZONE [--project=P] -- --config=configs/demo.py --workdir=gs://b/run1
# The repository must be at the same path on every worker (REPO_DIR, default: this checkout's
# path); set it up first, e.g. with `gcloud compute tpus tpu-vm ssh ... --worker=all --command=...`.
set -euo pipefail
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ $# -lt 2 || "$1" == "-h" || "$1" == "--help" ]]; then
  usage
  exit 0
fi
tpu="$1"
zone="$2"
shift 2
gcloud_flags=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  gcloud_flags+=("$1")
  shift
done
if [[ "${1:-}" == "--" ]]; then
  shift
fi
repo="${REPO_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
printf -v args ' %q' "$@"
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all "${gcloud_flags[@]}" \
  --command="cd $(printf '%q' "$repo") && python -m vidrec_jax.main --distributed=auto${args}"
