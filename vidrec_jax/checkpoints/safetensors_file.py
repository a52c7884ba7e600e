"""`.safetensors` files read with numpy only (no safetensors package needed).

Format: an 8-byte little-endian header length, a JSON header mapping each name to its
    dtype, shape and `data_offsets` (relative to the end of the header), then the data.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from vidrec_jax.checkpoints.tensors import DTYPES
from vidrec_jax.checkpoints.tensors import as_int
from vidrec_jax.checkpoints.tensors import fail
from vidrec_jax.checkpoints.tensors import one_line

MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces

_DTYPE_CODES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "C64": "complex64"}



def read_file(path: str) -> dict[str, np.ndarray]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise fail(path, "truncated: shorter than the 8-byte safetensors header length")
    header_len = int.from_bytes(head, "little")
    if header_len > size - 8:
      raise fail(path, f"truncated: the safetensors header claims {header_len} bytes but only "
                  f"{size - 8} follow")
    try:
      header = json.loads(f.read(header_len).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise fail(path, f"the safetensors header is not valid JSON ({one_line(e)})") from e
    if not isinstance(header, dict):
      raise fail(path, "the safetensors header is not a JSON object")
    data_start, data_len = 8 + header_len, size - 8 - header_len
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
      if name == "__metadata__":
        continue
      try:
        code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        shape = tuple(as_int(d, "size") for d in shape)
        begin, end = as_int(begin, "offset"), as_int(end, "offset")
      except (KeyError, TypeError, ValueError) as e:
        raise fail(path, f"bad safetensors entry for {name!r}: {info!r} ({e})") from e
      if code not in _DTYPE_CODES:
        raise fail(path, f"tensor {name!r} has dtype {code!r}, which is not supported")
      dtype = DTYPES[_DTYPE_CODES[code]]
      if any(d < 0 for d in shape):
        raise fail(path, f"tensor {name!r} has a negative dimension in {shape}")
      nbytes = math.prod(shape) * dtype.itemsize
      if not 0 <= begin <= end or end - begin != nbytes:
        raise fail(path, f"tensor {name!r} ({code} {list(shape)}) needs {nbytes} bytes but its "
                    f"data_offsets are [{begin}, {end}]")
      if end > data_len:
        raise fail(path, f"truncated: tensor {name!r} needs data bytes [{begin}, {end}) but only "
                    f"{data_len} are present")
      f.seek(data_start + begin)
      raw = f.read(nbytes)
      values = np.frombuffer(raw, dtype.storage_dtype("little")).reshape(shape)
      out[name] = dtype.to_native(values)
    return out
