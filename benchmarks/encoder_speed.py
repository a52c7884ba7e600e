"""Train-step speed of the video encoders on this machine: impressions/s and ms per step of the
whole recommender's jitted train step (forward, backward, optimizer), from random batches of the
inputs each model declares, on one device; model FLOPs utilisation when a peak is given.

  python benchmarks/encoder_speed.py [--configs=encoder_ablation.py:rgb,...] [--steps=20]
  python benchmarks/encoder_speed.py --dtype=bfloat16 --peak_tflops=989 --batch=256   # a GPU

The default list covers the ablation's variants (from pixels, flow estimated in the step), the
factorised spatial + temporal attention, the flow variants with the loader's flow
(`flow_source='loader'`: the step reads the fields instead of estimating them), and the demo's
frozen EfficientNet-Lite0 tower trained from its feature cache (`demo.py:pretrained`) and from
pixels (`pretrained.py:pixels`).
"""

import functools
import importlib
import time

import jax
from absl import app
from absl import flags

from vidrec_jax import run_spec
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps as steps_lib
from vidrec_jax.train.random_batch import random_batch
from vidrec_jax.train.state import Setup

_CONFIGS = flags.DEFINE_list("configs", [
    "encoder_ablation.py:rgb", "encoder_ablation.py:flow", "encoder_ablation.py:attention",
    "encoder_ablation.py:both", "encoder_ablation.py:pyramid", "encoder_ablation.py:spatial",
    "encoder_ablation.py:flow_loader", "encoder_ablation.py:pyramid_loader", "demo.py:pretrained",
    "pretrained.py:pixels"], "configs/FILE:ARG of the models to time.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (after two compiled warm-up steps).")
_BATCH = flags.DEFINE_integer("batch", 0, "Clips per batch (0: the config's data.batch_size).")
_DTYPE = flags.DEFINE_string("dtype", "", "model.dtype override (e.g. bfloat16).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Device peak TFLOP/s at this dtype, for MFU.")
NUM_USERS, NUM_VIDEOS = 300, 500


def load(spec: str):
  name, _, arg = spec.partition(":")
  if name == "encoder_ablation.py" and arg == "spatial":
    config = load("encoder_ablation.py:both")
    config.model.frame_encoder.spatial_attention = True
    return config
  if name == "encoder_ablation.py" and arg.endswith("_loader"):  # flow read, not estimated
    config = load("encoder_ablation.py:" + arg[:-len("_loader")])
    config.model.frame_encoder.flow_source = "loader"
    return config
  return importlib.import_module("configs." + name[:-3]).get_config(arg)


def main(_):
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {_STEPS.value} steps")
  print(f"{'config':32s} {'clips':>5s} {'ms/step':>8s} {'impr/s':>8s} {'GFLOP/step':>10s} "
        f"{'MFU':>6s}")
  for spec in _CONFIGS.value:
    config = load(spec)
    if _BATCH.value:
      config.data.batch_size = _BATCH.value
    if _DTYPE.value:
      config.model.dtype = _DTYPE.value
    config.mesh.shape = dict(data=1, fsdp=1, model=1)
    setup = Setup(run_spec.resolve(config), NUM_USERS, NUM_VIDEOS, mesh_lib.make_mesh(config.mesh,
                                                                     jax.devices()[:1]))
    state = setup.init(0)
    step = jax.jit(functools.partial(steps_lib.train_step, setup), donate_argnums=(0,))
    batches = [jax.device_put(random_batch(config, NUM_USERS, NUM_VIDEOS, seed=s))
               for s in range(2)]
    flops = step.lower(state, batches[0]).compile().cost_analysis()
    flops = float((flops[0] if isinstance(flops, list) else flops).get("flops", 0.0))
    for b in batches:
      state, m = step(state, b)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for i in range(_STEPS.value):
      state, m = step(state, batches[i % 2])
    jax.block_until_ready(m)
    secs = (time.perf_counter() - t) / _STEPS.value
    impressions = config.data.batch_size * config.data.impressions_per_clip
    mfu = flops / secs / (_PEAK.value * 1e12) if _PEAK.value else float("nan")
    print(f"{spec:32s} {config.data.batch_size:5d} {secs * 1e3:8.1f} {impressions / secs:8.0f} "
          f"{flops / 1e9:10.2f} {mfu:6.1%}", flush=True)
    del state, batches


if __name__ == "__main__":
  app.run(main)
