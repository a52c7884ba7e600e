"""torch and torchvision for the parity tests, imported the one way that works with the pinned CPU
torch beside PyPI's torchvision (a CUDA build). transformers imports torchvision when it is
installed, so a test that imports sentence-transformers needs `torchvision_module()` first too:
whichever test a pytest worker runs first, the import is the same.
"""

import sys

from absl.testing import absltest


def torch_module():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise absltest.SkipTest(f"torch is not importable ({e}); it comes with the test extras") from e
  return torch


# The op library torchvision_module() declares: kept alive, since a collected Library takes its
# definitions back out of the dispatcher.
_TORCHVISION_STUBS = []


def torchvision_module():
  """torchvision, importable even where its C++ ops cannot load.

  PyPI's torchvision 0.28.0 (the release for torch 2.13.0) is a CUDA build: its _C.so links
  libtorch_cuda.so, which the pinned CPU torch lacks, so it loads none of its ops. torchvision
  means to run without them, but registers fake kernels for torchvision::nms and ::qnms
  unconditionally, and its import dies with "operator torchvision::nms does not exist". Only on
  that error (a build whose ops load defines the two itself) are their schemas declared here and
  the import retried; the ResNets use plain aten ops, never these.
  """
  torch = torch_module()
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except RuntimeError as e:
    if "torchvision::nms" not in str(e) or _TORCHVISION_STUBS:
      raise
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[module]  # the half-done first import
    lib = torch.library.Library("torchvision", "DEF")  # pylint: disable=no-member
    for op in ("nms", "qnms"):
      lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_STUBS.append(lib)
    import torchvision  # pylint: disable=g-import-not-at-top
  return torchvision
