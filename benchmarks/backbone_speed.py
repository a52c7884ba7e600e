"""Speed of the Flax EfficientNet-Lite forward against the PyTorch reference, same CPU, same
batch, same weights, measured in one run; and the two depthwise-conv implementations.

  python benchmarks/backbone_speed.py [--batch=16] [--repeats=5] [--variant=efficientnet_lite0]

Needs the test extras (torch==2.13.0 and efficientnet-lite-pytorch) for the reference.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from vidrec_jax.models import backbones
from vidrec_jax.models.backbones import common

_BATCH = flags.DEFINE_integer("batch", 16, "Images per forward.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed forwards (after one warm-up).")
_VARIANT = flags.DEFINE_string("variant", "efficientnet_lite0", "EfficientNet-Lite variant.")


def _time(fn, repeats: int) -> float:
  fn()
  t = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - t) / repeats


def main(_):
  import torch  # pylint: disable=g-import-not-at-top
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top

  name, bs, n = _VARIANT.value, _BATCH.value, _REPEATS.value
  clf = backbones.pretrained_classifier(name)
  res = clf.resolution
  images = np.random.default_rng(0).integers(0, 256, (bs, res, res, 3), dtype=np.uint8)
  weights = backbones.BACKBONES.get(name).default_checkpoint()
  ref = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=weights).eval()
  x = (torch.from_numpy(images).float().permute(0, 3, 1, 2) - 127.0) / 128.0

  def torch_fwd():
    with torch.no_grad():
      return ref(x)

  jax_s = _time(lambda: clf(images), n)
  torch_s = _time(torch_fwd, n)
  print(f"{name} forward, batch {bs} at {res}x{res}, {n} repeats; torch threads "
        f"{torch.get_num_threads()}, jax {jax.__version__} on {jax.default_backend()}")
  print(f"{'implementation':24s} {'s/batch':>9s} {'frames/s':>9s}")
  print(f"{'flax (vidrec_jax)':24s} {jax_s:9.3f} {bs / jax_s:9.1f}")
  print(f"{'torch reference':24s} {torch_s:9.3f} {bs / torch_s:9.1f}")
  print(f"flax / torch speed: {torch_s / jax_s:.2f}x")

  print("\ndepthwise conv (N=16), lax grouped conv vs shifted sums, ms:")
  print(f"{'H':>4s} {'C':>5s} {'k':>2s} {'s':>2s} {'lax':>8s} {'shift':>8s}")
  rng = np.random.default_rng(1)
  for h, c, k, s in [(112, 96, 3, 2), (56, 144, 3, 1), (28, 240, 5, 1), (14, 672, 5, 2)]:
    xx = jnp.asarray(rng.random((16, h, h, c), np.float32))
    w = jnp.asarray(rng.random((k, k, 1, c), np.float32))
    times = []
    for impl in ("lax", "shift"):
      f = jax.jit(lambda a, b, impl=impl, s=s: common.depthwise_conv(a, b, s, impl))
      times.append(_time(lambda f=f, xx=xx, w=w: f(xx, w).block_until_ready(), 3) * 1000)
    print(f"{h:4d} {c:5d} {k:2d} {s:2d} {times[0]:8.1f} {times[1]:8.1f}")


if __name__ == "__main__":
  app.run(main)
