#!/usr/bin/env bash
# Runs vidrec_jax.main on this machine: one process, or NUM_PROCESSES processes joined by
# jax.distributed (CPU devices, gloo collectives) that train one model together.
#   launch/local.sh [NUM_PROCESSES] --config=configs/demo.py --workdir=DIR [more flags of main]
# Each process sees the devices XLA gives it; for fake CPU devices set, e.g.,
#   XLA_FLAGS=--xla_force_host_platform_device_count=4 launch/local.sh 2 --config=...
# If one process fails, the others are stopped and the script exits with its status.
# SIGTERM/SIGINT are forwarded: every process saves at the next step boundary and exits 0.
set -euo pipefail
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then
  usage
  exit 0
fi
n=1
if [[ "$1" =~ ^[0-9]+$ ]]; then
  n="$1"
  shift
fi
if [[ "$n" -lt 1 ]]; then
  echo "error: NUM_PROCESSES must be >= 1, got $n" >&2
  exit 2
fi
if [[ "$n" -eq 1 ]]; then
  exec python -m vidrec_jax.main "$@"
fi
port="$(python -c 'import socket; s=socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')"
pids=()
for ((i = 0; i < n; i++)); do
  VIDREC_COORDINATOR="localhost:${port}" VIDREC_NUM_PROCESSES="$n" VIDREC_PROCESS_ID="$i" \
    python -m vidrec_jax.main "$@" &
  pids+=("$!")
done
signalled=0
# shellcheck disable=SC2317,SC2329  # invoked by the trap
forward() {
  signalled=1
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap forward TERM INT
status=0
remaining=$n
while [[ "$remaining" -gt 0 ]]; do
  set +e
  wait -n "${pids[@]}"
  rc=$?
  set -e
  if [[ "$rc" -eq 127 ]]; then  # no child left to wait for
    break
  fi
  if [[ "$signalled" -eq 1 && "$rc" -gt 128 ]]; then  # wait was interrupted by our trap
    signalled=2
    continue
  fi
  remaining=$((remaining - 1))
  if [[ "$rc" -ne 0 && "$status" -eq 0 ]]; then
    status=$rc
    echo "error: a vidrec_jax process exited with status $rc; stopping the others" >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
  fi
done
exit "$status"
