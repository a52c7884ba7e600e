#!/usr/bin/env bash
# Runs vidrec_jax.main on this machine: one process, every local device.
#   launch/local.sh --config=configs/demo.py --workdir=/tmp/vidrec_demo [more flags of main]
# Multi-process launching (N processes, SLURM, TPU VM, Kubernetes) is tracked in its own issue.
set -euo pipefail
if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
exec python -m vidrec_jax.main "$@"
