"""Orbax save and restore seconds for a ~100M-parameter train state (parameters + Adam moments,
about 1.2 GB), saved from a (data=1, fsdp=4, model=2) mesh of 8 fake CPU devices and restored
onto the same mesh, onto (data=2, fsdp=1, model=1) on 2 devices, and onto 1 device.

  python benchmarks/checkpoint_io.py [--dir=/tmp/vidrec_ckpt_bench] [--repeats=3]

`save (blocking)` is the time until Checkpointer.save returns (the device-to-host copy; the
write to disk continues in a background thread while training goes on); `save (total)` adds the
wait until the checkpoint is finalised on disk. Restores build the target shardings first and
each device reads only its shards. Every float leaf of the state holds random values (a
fresh state's zero Adam moments would compress to nothing). The model is configs/demo.py:conv
with 1,000,000 users and 560,000 videos at embed_dim 64, so the two embedding tables hold most
of the parameters.
"""

import os
import shutil
import sys
import time

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"  # before importing jax

import importlib.util  # noqa: E402  pylint: disable=g-import-not-at-top,g-bad-import-order

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from vidrec_jax.train import checkpointing  # noqa: E402
from vidrec_jax.train import mesh as mesh_lib  # noqa: E402
from vidrec_jax import run_spec  # noqa: E402
from vidrec_jax.train.state import Setup  # noqa: E402

_DIR = flags.DEFINE_string("dir", "/tmp/vidrec_ckpt_bench", "Checkpoint directory (erased).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per figure (median reported).")

NUM_USERS, NUM_VIDEOS, EMBED = 1_000_000, 560_000, 64


def setup_on(n: int, shape: dict) -> Setup:
  spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(REPO, "configs",
                                                                         "demo.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config("conv")
  config.model.embed_dim = EMBED
  config.mesh.shape = shape
  return Setup(run_spec.resolve(config), NUM_USERS, NUM_VIDEOS, mesh_lib.make_mesh(config.mesh, jax.devices()[:n]))


def main(_):
  shutil.rmtree(_DIR.value, ignore_errors=True)
  src = setup_on(8, {"data": 1, "fsdp": 4, "model": 2})
  params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(src.abstract_state.params))
  state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(src.abstract_state))
  print(f"parameters: {params:,}; train state: {state_bytes / 2**30:.2f} GiB", flush=True)
  # Random values in every float leaf, Adam moments included: freshly initialised moments are
  # all zeros, which Orbax's compressed storage would make look far cheaper than a trained state.
  def fill(tree):
    leaves, treedef = jax.tree.flatten(tree)
    key = jax.random.PRNGKey(0)
    out = [jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
           if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) else x
           for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, out)
  state = jax.jit(fill, out_shardings=src.state_shardings)(src.init(0))
  jax.block_until_ready(state)
  blocking, total = [], []
  for i in range(_REPEATS.value):
    ckpt = checkpointing.Checkpointer(os.path.join(_DIR.value, f"run{i}"), every=1, keep=1)
    t = time.perf_counter()
    ckpt.save(1, state, checkpointing.data_position(1, 64, 0), force=True)
    blocking.append(time.perf_counter() - t)
    ckpt.wait()
    total.append(time.perf_counter() - t)
    ckpt.close()
  path = os.path.join(_DIR.value, "run0")
  on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  rows = [("save (blocking), (1,4,2) on 8 devices", blocking),
          ("save (total), (1,4,2) on 8 devices", total)]
  want = jax.device_get(state.params["user_tower"]["user_embed"]["embedding"][:5])
  del state
  for name, n, shape in (("restore onto (1,4,2), 8 devices", 8,
                          {"data": 1, "fsdp": 4, "model": 2}),
                         ("restore onto (2,1,1), 2 devices", 2,
                          {"data": 2, "fsdp": 1, "model": 1}),
                         ("restore onto 1 device", 1, {"data": 1, "fsdp": 1, "model": 1})):
    target = setup_on(n, shape)
    secs = []
    for _ in range(_REPEATS.value):
      ckpt = checkpointing.Checkpointer(path, every=1, keep=1)
      t = time.perf_counter()
      restored = ckpt.restore(target.abstract_state)
      jax.block_until_ready(restored.state)
      secs.append(time.perf_counter() - t)
      ckpt.close()
      got = jax.device_get(restored.state.params["user_tower"]["user_embed"]["embedding"][:5])
      np.testing.assert_array_equal(got, want)
      del restored
    rows.append((name, secs))
  print(f"\ncheckpoint on disk: {on_disk / 2**30:.2f} GiB\n")
  print("| operation | median s | runs |")
  print("|---|---|---|")
  for name, secs in rows:
    print(f"| {name} | {np.median(secs):.2f} | {', '.join(f'{s:.2f}' for s in secs)} |")
  shutil.rmtree(_DIR.value, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
