"""Foreign pretrained weights: safe readers, strict conversion, installed wheels, pretrained parts.

Public API:
  read(path) -> dict[str, np.ndarray]: any supported file, recognised by its content.
  read_torch(path) -> dict[str, np.ndarray]: a `torch.save` file, zip or legacy format, read
    without torch and without executing pickle code.
  read_safetensors(path) -> dict[str, np.ndarray]: a `.safetensors` file, numpy only.
  UnsafeCheckpointError: the pickle inside a PyTorch file references a global we refuse.

Modules: `reader` (format sniffing and the public readers), `torch_pickle` (the restricted
unpickler and the zip / legacy layouts), `safetensors_file`, `tensors` (dtypes, the one-line
format error), `convert` (declarative, strict name maps onto Flax parameters), `wheels` (files
inside installed data-only wheels), `parts` (the registry of pretrained model parts).
"""

from vidrec_jax.checkpoints.reader import read
from vidrec_jax.checkpoints.reader import read_safetensors
from vidrec_jax.checkpoints.reader import read_torch
from vidrec_jax.checkpoints.torch_pickle import UnsafeCheckpointError

__all__ = ["UnsafeCheckpointError", "read", "read_safetensors", "read_torch"]
