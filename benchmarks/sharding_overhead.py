"""Train-step time and bytes per device on 1, 2, 4 and 8 fake CPU devices at a fixed global
batch, for three layouts of the same model: data parallel (`data`), FSDP (`fsdp`: parameters and
optimizer state split over the fsdp axis) and vocabulary-sharded tables (`model`).

  python benchmarks/sharding_overhead.py [--devices=1,2,4,8] [--layouts=data,fsdp,model]

Every (devices, layout) pair runs in its own process (XLA's fake device count is fixed at
start-up). All fake devices share this machine's cores, so this measures the cost of sharding
(collectives, partitioned compute), not a speed-up. The model is configs/demo.py:conv (pixels,
6 frames of 32x32, global batch 64 clips x 4 impressions) with 200,000 users and 100,000
videos, so that the embedding tables dominate the parameter bytes.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Fake CPU device counts.")
_LAYOUTS = flags.DEFINE_list("layouts", ["data", "fsdp", "model"], "Mesh layouts.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after 2 warm-up steps).")
_CHILD = flags.DEFINE_string("child", "", "Internal: 'devices,layout' to measure in-process.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_USERS, NUM_VIDEOS = 200_000, 100_000


def measure(devices: int, layout: str, steps: int) -> dict:
  import functools  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from vidrec_jax.models import partitioning  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import steps as steps_lib  # pylint: disable=g-import-not-at-top
  from vidrec_jax import run_spec  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train.state import Setup  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(REPO, "configs",
                                                                         "demo.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config("conv")
  config.mesh.shape = {"data": 1, "fsdp": 1, "model": 1, layout: devices}
  setup = Setup(run_spec.resolve(config), NUM_USERS, NUM_VIDEOS, mesh_lib.make_mesh(config.mesh))
  d = config.data
  b, m, k, s = d.batch_size, d.impressions_per_clip, d.num_frames, d.frame_size
  rng = np.random.default_rng(0)
  batch = {
      "frames": rng.normal(size=(b, k, s, s, 3)).astype(np.float32),
      "motion": rng.normal(size=(b, k, s, s, 3)).astype(np.float32) * 0.1,
      "mask": np.ones((b, k), np.float32), "valid": np.ones(b, np.int32),
      "weight": np.ones((b, m), np.float32),
      "user": rng.integers(0, NUM_USERS, (b, m)).astype(np.int32),
      "video": rng.integers(0, NUM_VIDEOS, b).astype(np.int32),
      "position": rng.integers(0, 8, (b, m)).astype(np.int32),
      "click": (rng.random((b, m)) < 0.3).astype(np.float32),
      "watch_time": rng.random((b, m)).astype(np.float32),
      "like": (rng.random((b, m)) < 0.1).astype(np.float32)}
  step = jax.jit(functools.partial(steps_lib.train_step, setup),
                 in_shardings=(setup.state_shardings, None),
                 out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
  state = setup.init(0)
  sharded = mesh_lib.shard_batch(batch, setup.mesh, setup.rules)
  times = []
  for i in range(steps + 2):
    t = time.perf_counter()
    with partitioning.activation_sharding(setup.mesh, setup.rules):
      state, metrics = step(state, sharded)
    jax.block_until_ready(metrics)
    if i >= 2:
      times.append(time.perf_counter() - t)
  params = setup.abstract_state.params
  table = params["user_tower"]["user_embed"]["embedding"]
  return {
      "devices": devices, "layout": layout, "mesh": dict(setup.mesh.shape),
      "step_ms": 1e3 * float(np.median(times)),
      "param_bytes_per_device": mesh_lib.bytes_per_device(params, setup.param_shardings),
      "opt_bytes_per_device": mesh_lib.bytes_per_device(setup.abstract_state.opt_state,
                                                        setup.state_shardings.opt_state),
      "user_table_bytes_per_device": mesh_lib.shard_bytes(
          table, setup.param_shardings["user_tower"]["user_embed"]["embedding"]),
      "user_table_bytes": table.size * table.dtype.itemsize,
  }


def main(_):
  if _CHILD.value:
    n, layout = _CHILD.value.split(",")
    print("RESULT " + json.dumps(measure(int(n), layout, _STEPS.value)), flush=True)
    return
  rows = []
  for n in map(int, _DEVICES.value):
    for layout in _LAYOUTS.value:
      if n == 1 and layout != _LAYOUTS.value[0]:
        continue  # one device: every layout is the same
      env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                 PYTHONPATH=REPO)
      r = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={n},{layout}",
                          f"--steps={_STEPS.value}"], capture_output=True, text=True, env=env,
                         cwd=REPO, check=False)
      line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
      if r.returncode or not line:
        raise SystemExit(f"{n} devices, {layout}: failed\n{r.stderr[-3000:]}")
      rows.append(json.loads(line[0][len("RESULT "):]))
      print(json.dumps(rows[-1]), flush=True)
  mib = 2 ** 20
  print("\n| devices | layout | mesh (data, fsdp, model) | step ms (median) | params MiB/device "
        "| optimizer MiB/device | user table MiB/device (of total) |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    mesh = tuple(r["mesh"][a] for a in ("data", "fsdp", "model"))
    print(f"| {r['devices']} | {r['layout'] if r['devices'] > 1 else '-'} | {mesh} | "
          f"{r['step_ms']:.0f} | {r['param_bytes_per_device'] / mib:.1f} | "
          f"{r['opt_bytes_per_device'] / mib:.1f} | {r['user_table_bytes_per_device'] / mib:.2f} "
          f"({r['user_table_bytes'] / mib:.2f}) |")


if __name__ == "__main__":
  app.run(main)
