"""Checkpoint tensors as numpy: element types, storage layouts, and the one-line format error
shared by the PyTorch and safetensors readers.

Output of every reader: the pickled object is flattened into '.'-joined names (a state dict
nested as {'state_dict': {...}} gives 'state_dict.conv.weight'; lists and tuples use their
indices); leaves that are not tensors (ints, floats, strings, None, bytes) are dropped; a bare
top-level tensor is returned under the name ''. Every array is a native-endian, C-contiguous
copy owned by the caller. Integer buffers such as `num_batches_tracked` (int64, shape ()) are
kept. numpy has no bfloat16, so bfloat16 tensors come back as float32 (exactly: bf16 is the
top half of a float32); complex and unsigned dtypes map to their numpy equivalents; float8 and
other exotic dtypes are refused with a ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FormatError(ValueError):
  """A malformed checkpoint; the message already names the file."""


def one_line(text: Any) -> str:
  return " ".join(str(text).split())


def fail(path: str, what: str) -> FormatError:
  return FormatError(f"{path}: {one_line(what)}")


def as_int(value: Any, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"tensor {what} {value!r} is not an integer")
  return value


class Sealed:
  """Refuses the pickle BUILD opcode: the stand-ins below are shared by every read, so a pickle
  must not be able to change their attributes (BUILD calls `__setstate__` when it exists)."""

  def __setstate__(self, state):
    raise ValueError(f"the pickle tries to set attributes on {self!r}")


class DType(Sealed):
  """A tensor element type: its numpy storage code (None when numpy cannot hold it)."""

  def __init__(self, name: str, code: str | None, itemsize: int):
    self.name = name
    self.code = code  # numpy kind+size without byte order, e.g. "f4"; bfloat16 is stored "u2"
    self.itemsize = itemsize

  def __repr__(self) -> str:
    return f"torch.{self.name}"

  def storage_dtype(self, byteorder: str) -> np.dtype:
    prefix = "|" if self.itemsize == 1 else ("<" if byteorder == "little" else ">")
    return np.dtype(prefix + self.code)

  def to_native(self, values: np.ndarray) -> np.ndarray:
    """A native-endian owned copy of `values` (raw storage elements) in the output dtype."""
    if self.name == "bfloat16":
      return (values.astype(np.uint32) << 16).view(np.float32)
    return np.array(values, dtype=values.dtype.newbyteorder("="), copy=True, order="C")


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("float64", "f8", 8), DType("float32", "f4", 4), DType("float16", "f2", 2),
    DType("bfloat16", "u2", 2), DType("int64", "i8", 8), DType("int32", "i4", 4),
    DType("int16", "i2", 2), DType("int8", "i1", 1), DType("uint8", "u1", 1),
    DType("bool", "b1", 1), DType("complex64", "c8", 8), DType("complex128", "c16", 16),
    DType("uint16", "u2", 2), DType("uint32", "u4", 4), DType("uint64", "u8", 8))}
# torch dtypes numpy cannot represent: accepted by the unpickler, refused when a tensor needs one.
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
              "float8_e8m0fnu", "float4_e2m1fn_x2", "complex32", "bits8", "bits16", "bits1x8",
              "bits2x4", "bits4x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4"):
  DTYPES[_name] = DType(_name, None, 0)
DTYPES["float"], DTYPES["double"], DTYPES["half"] = (DTYPES["float32"], DTYPES["float64"],
                                                        DTYPES["float16"])
DTYPES["long"], DTYPES["int"], DTYPES["short"] = (DTYPES["int64"], DTYPES["int32"],
                                                     DTYPES["int16"])

STORAGEDTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128"}
