#!/usr/bin/env bash
# Issue 12's GPU checks in one short run, for a lent H200 (the device tool) or any CUDA machine
# with jax[cuda]: the bf16 spatio-temporal encoder's train step and its model FLOPs utilisation,
# then the flow estimator's pairs/s. About 5 minutes; everything it prints goes to $OUT/gpu.log.
#
#   bash benchmarks/gpu_encoder.sh            # from the repository root
#
# The device image has jax, flax, optax, orbax and absl but not ml_collections, grain,
# array_record, tensorflow-datasets or av: carry their wheels (device README, `.whl` folder) and
# install them with --no-deps first. Peak: the H200's dense bf16 figure, 989 TFLOP/s (NVIDIA's
# datasheet); the device notes measured 769-798 TFLOP/s on an 8192^3 matmul, so MFU against the
# measured peak is the printed value x 989 / 790.
set -euo pipefail
OUT="${OUT:-/tmp/gpu_encoder}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  cd benchmarks
  # The encoder variants' train step in bf16 at a GPU-sized batch.
  python encoder_speed.py --dtype=bfloat16 --peak_tflops=989 --batch=512 --steps=30 \
    --configs=encoder_ablation.py:rgb,encoder_ablation.py:both,encoder_ablation.py:spatial,encoder_ablation.py:pyramid_loader
  python encoder_speed.py --dtype=bfloat16 --peak_tflops=989 --batch=2048 --steps=30 \
    --configs=encoder_ablation.py:spatial
  # The flow estimator alone: pairs/s of estimate_flow on device-resident uint8 pairs.
  python - <<'PY'
import time
import jax
import numpy as np
from vidrec_jax.data import flow
rng = np.random.default_rng(0)
for w, h, n in ((64, 64, 4096), (176, 144, 1024), (352, 288, 256)):
  a = jax.device_put(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))
  b = jax.device_put(np.roll(np.asarray(a), 1, axis=2))
  jax.block_until_ready(flow.estimate_flow(a, b))
  t = []
  for _ in range(5):
    s = time.perf_counter()
    jax.block_until_ready(flow.estimate_flow(a, b))
    t.append(time.perf_counter() - s)
  print(f"flow {w}x{h}: {n / np.median(t):,.0f} pairs/s median of 5 ({n} pairs per call)")
PY
} 2>&1 | tee "$OUT/gpu.log"
