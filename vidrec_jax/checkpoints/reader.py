"""Reading foreign checkpoints into numpy; the format is recognised by content, not by name."""

from __future__ import annotations

import errno
import io
import os
import zipfile
from typing import Callable

import numpy as np

from vidrec_jax.checkpoints import safetensors_file
from vidrec_jax.checkpoints import torch_pickle
from vidrec_jax.checkpoints.tensors import FormatError
from vidrec_jax.checkpoints.tensors import fail
from vidrec_jax.checkpoints.tensors import one_line
from vidrec_jax.checkpoints.torch_pickle import UnsafeCheckpointError


def _sniff(path: str) -> str:
  """'zip', 'legacy', 'safetensors', or raises for anything else."""
  try:
    size = os.path.getsize(path)
  except FileNotFoundError:
    raise FileNotFoundError(errno.ENOENT, "checkpoint file not found", path) from None
  if size == 0:
    raise fail(path, "the file is empty, not a checkpoint")
  with open(path, "rb") as f:
    head = f.read(256)
  if head[:4] in torch_pickle.ZIP_MAGICS:
    return "zip"
  if len(head) >= 9 and head[8:9] == b"{":
    header_len = int.from_bytes(head[:8], "little")
    if 2 <= header_len <= safetensors_file.MAX_HEADER:
      return "safetensors"
  # A pickle of protocol >= 2, or of protocol 0/1 starting with the magic number.
  if head[:1] == b"\x80" or head.startswith(b"L%d" % torch_pickle.TORCH_MAGIC):
    try:
      magic = torch_pickle.PlainUnpickler(io.BytesIO(head), path).load()
    except UnsafeCheckpointError:
      raise
    except Exception:  # any failure just means "not the torch magic number"
      magic = None
    if magic == torch_pickle.TORCH_MAGIC:
      return "legacy"
    if head[:1] == b"\x80":
      raise fail(path, "a pickle without the torch magic number: not written by torch.save, "
                  "or truncated")
  if len(head) > 257 + 5 and head[257:262] == b"ustar":
    raise fail(path, "a tar archive (pre-0.4 torch.save format?), which is not supported")
  raise fail(path, "not a PyTorch (zip or legacy pickle) or safetensors checkpoint "
              f"(starts with {head[:8]!r})")


def _guarded(path: str, reader: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Runs `reader`, turning low-level failures into a one-line ValueError naming `path`."""
  try:
    return reader()
  except (UnsafeCheckpointError, FormatError, OSError):
    raise
  except zipfile.BadZipFile as e:
    raise fail(path, f"corrupt or truncated zip archive ({one_line(e)})") from e
  except Exception as e:  # pickle, struct, json, numpy internals
    raise fail(path, f"corrupt or truncated checkpoint ({type(e).__name__}: {one_line(e)})"
                ) from e


def _read_torch(path: str, kind: str) -> dict[str, np.ndarray]:
  return torch_pickle.read_zip(path) if kind == "zip" else torch_pickle.read_legacy(path)


def read_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a `torch.save` file (zip or legacy format) without torch and without running code.

  Args:
    path: a `.pth`/`.pt` file holding a state dict, possibly nested (e.g. under 'state_dict').

  Returns:
    '.'-joined tensor name -> numpy array (see the module docstring: non-tensor leaves are
    dropped, bfloat16 becomes float32, `num_batches_tracked` buffers are kept).

  Raises:
    FileNotFoundError: `path` does not exist.
    UnsafeCheckpointError: the pickle references a global outside the allow-list (e.g. a pickled
      nn.Module class, numpy arrays, or a code-execution payload such as os.system).
    ValueError: the file is not a PyTorch checkpoint, is truncated or corrupt, or a tensor needs
      more storage than the file holds.
  """
  path = os.fspath(path)
  kind = _sniff(path)
  if kind == "safetensors":
    raise fail(path, "a safetensors file, not a torch.save file: use read_safetensors or read")
  return _guarded(path, lambda: _read_torch(path, kind))


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a `.safetensors` file with numpy only (no safetensors package needed).

  Args:
    path: the file.

  Returns:
    tensor name -> numpy array, in header order; the `__metadata__` entry is skipped and BF16
    tensors come back as float32.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is not a safetensors file, is truncated, or has a malformed header or an
      unsupported dtype.
  """
  path = os.fspath(path)
  kind = _sniff(path)
  if kind != "safetensors":
    raise fail(path, f"not a safetensors file (looks like a {kind} PyTorch checkpoint)")
  return _guarded(path, lambda: safetensors_file.read_file(path))


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads any supported checkpoint (torch zip, torch legacy, safetensors), chosen by content.

  Args:
    path: the file; its extension is not consulted.

  Returns:
    tensor name -> numpy array, as `read_torch` or `read_safetensors` return them.

  Raises:
    FileNotFoundError, UnsafeCheckpointError, ValueError: as `read_torch` documents.
  """
  path = os.fspath(path)
  kind = _sniff(path)
  if kind == "safetensors":
    return _guarded(path, lambda: safetensors_file.read_file(path))
  return _guarded(path, lambda: _read_torch(path, kind))
