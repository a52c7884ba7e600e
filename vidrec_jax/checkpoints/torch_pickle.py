"""PyTorch `torch.save` files read without torch and without running pickle code.

Formats:
  * zip (torch >= 1.6): an archive whose entries share one top folder `<prefix>/`;
    `<prefix>/data.pkl` is the pickled object, `<prefix>/data/<key>` holds the raw bytes of
    each storage and `<prefix>/byteorder` ("little" or "big"; little when absent) their byte
    order.
  * legacy (torch < 1.6 or `_use_new_zipfile_serialization=False`): five consecutive pickles
    (magic number, protocol version 1001, a sys-info dict, the object, the sorted list of storage
    keys), then for each key an 8-byte little-endian element count followed by the storage's raw
    bytes. Torch writes these bytes little-endian whatever the machine (the sys-info
    `little_endian` flag only describes the writer), so they are read as little-endian. The
    pre-0.4 tar variant is not supported.

Safety: the pickles are never executed as pickles normally are. A restricted unpickler maps the
few globals a state dict needs (the `torch._utils._rebuild_*` tensor functions, the storage
types, `collections.OrderedDict`, `torch.Size`, the torch dtypes and `_codecs.encode`, which
protocol 2 uses for `bytes`) to local stand-ins that only record shapes, strides and storage
keys; any other global raises `UnsafeCheckpointError` before anything is called. Tensor data is
then read directly from the storage bytes.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from typing import Any, Callable

import numpy as np

from vidrec_jax.checkpoints.tensors import DTYPES
from vidrec_jax.checkpoints.tensors import STORAGEDTYPES
from vidrec_jax.checkpoints.tensors import DType
from vidrec_jax.checkpoints.tensors import Sealed
from vidrec_jax.checkpoints.tensors import as_int
from vidrec_jax.checkpoints.tensors import fail

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


class UnsafeCheckpointError(ValueError):
  """A checkpoint's pickle references a global outside the tensor-loading allow-list."""


class _StorageType(Sealed):
  """Stand-in for a torch storage class such as torch.FloatStorage (or the untyped storage)."""

  def __init__(self, name: str, dtype: DType):
    self.name = name
    self.dtype = dtype

  def __repr__(self) -> str:
    return self.name

  def __call__(self, *args, **kwargs):
    raise ValueError(f"the pickle instantiates storage type {self.name} directly")


class _StorageRef(Sealed):
  """A storage named by a persistent id: its key, element type and (legacy) view window."""

  def __init__(self, key: str, dtype: DType, numel: int, view: tuple[int, int] | None = None):
    self.key = key
    self.dtype = dtype
    self.numel = numel
    self.view = view  # (byte offset, byte length) into the root storage, or None


class _TensorRef(Sealed):
  """A tensor the pickle rebuilds: storage plus element offset, shape and strides."""

  def __init__(self, storage: Any, offset: Any, size: Any, stride: Any,
               dtype: DType | None = None, metadata: Any = None):
    if not isinstance(storage, _StorageRef):
      raise ValueError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    self.storage = storage
    self.dtype = dtype if dtype is not None else storage.dtype
    self.offset = as_int(offset, "storage offset")
    self.size = tuple(as_int(s, "size") for s in size)
    self.stride = tuple(as_int(s, "stride") for s in stride)
    self.negate = isinstance(metadata, dict) and bool(metadata.get("neg"))
    self.conjugate = isinstance(metadata, dict) and bool(metadata.get("conj"))


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks
  return _TensorRef(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  del requires_grad, backward_hooks
  if not isinstance(dtype, DType):
    raise ValueError(f"tensor dtype {dtype!r} is not a torch dtype")
  return _TensorRef(storage, storage_offset, size, stride, dtype=dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  if not isinstance(data, _TensorRef):
    raise ValueError(f"parameter rebuilt from {type(data).__name__}, not a tensor")
  return data


def _size(dims=()):
  return tuple(as_int(d, "size") for d in dims)


def _encode(text, encoding="utf-8", errors="strict"):
  """`_codecs.encode` as protocol 2 uses it for bytes objects; text codecs only."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
    raise ValueError(f"_codecs.encode with {type(text).__name__} / {encoding!r} is not allowed")
  return text.encode(encoding, errors if errors in ("strict", "ignore", "replace") else "strict")


class _Function(Sealed):
  """An allow-listed function stand-in; wrapping it keeps the function object itself (its
  `__defaults__`, `__dict__`) out of the pickle's reach."""

  def __init__(self, name: str, fn: Callable[..., Any]):
    self._name = name
    self._fn = fn

  def __repr__(self) -> str:
    return self._name

  def __call__(self, *args, **kwargs):
    return self._fn(*args, **kwargs)


class _OrderedDict(dict):
  """Stand-in for collections.OrderedDict (dicts keep order); ignores pickled attributes such as
  a state dict's `_metadata`."""

  def __setstate__(self, state):
    del state


def _allowed_globals() -> dict[tuple[str, str], Any]:
  functions = {
      ("collections", "OrderedDict"): _OrderedDict,
      ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
      ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
      ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
      ("torch", "Size"): _size,
      ("_codecs", "encode"): _encode,
  }
  table: dict[tuple[str, str], Any] = {
      key: _Function(".".join(key), fn) for key, fn in functions.items()}
  for name, dtype in STORAGEDTYPES.items():
    for module in ("torch", "torch.cuda"):
      table[(module, name)] = _StorageType(f"{module}.{name}", DTYPES[dtype])
  for module in ("torch", "torch.storage"):
    for name in ("UntypedStorage", "_UntypedStorage"):
      table[(module, name)] = _StorageType(f"{module}.{name}", DTYPES["uint8"])
  for name, dtype in DTYPES.items():
    table[("torch", name)] = dtype
  return table


_ALLOWED = _allowed_globals()


class PlainUnpickler(pickle.Unpickler):
  """Unpickles plain data only: every global and persistent id is refused."""

  def __init__(self, file, path: str):
    super().__init__(file, encoding="latin1")
    self._path = path

  def find_class(self, module, name):
    raise UnsafeCheckpointError(
        f"{self._path}: the checkpoint's pickle references the global '{module}.{name}', which "
        "is not on the allow-list of tensor-rebuild functions and storage types; refusing to "
        "load it (it could run arbitrary code)")

  def persistent_load(self, pid):
    raise ValueError(f"unexpected persistent id {pid!r}")


class _TorchUnpickler(PlainUnpickler):
  """Unpickles a state dict: allow-listed globals map to stand-ins, storages to `_StorageRef`s.

  `storages` collects the first storage type seen for each key (its element size is what the
  legacy format counts elements in).
  """

  def __init__(self, file, path: str):
    super().__init__(file, path)
    self.storages: dict[str, _StorageRef] = {}

  def find_class(self, module, name):
    found = _ALLOWED.get((module, name))
    if found is None:
      return super().find_class(module, name)
    return found

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid:
      raise ValueError(f"persistent id {pid!r} is not a tuple")
    kind = _as_str(pid[0])
    if kind == "module":
      raise ValueError("the file pickles a whole nn.Module, not a state dict")
    if kind != "storage" or len(pid) not in (5, 6):
      raise ValueError(f"unknown persistent id {pid!r}")
    storage_type, key, _, numel = pid[1:5]
    view_metadata = pid[5] if len(pid) == 6 else None
    if not isinstance(storage_type, _StorageType):
      raise ValueError(f"persistent id names {storage_type!r}, not a storage type")
    key = _as_str(key)
    dtype = storage_type.dtype
    numel = as_int(numel, "storage size")
    if key not in self.storages:
      self.storages[key] = _StorageRef(key, dtype, numel)
    if view_metadata is None:
      return _StorageRef(key, dtype, numel)
    # Pre-1.0 legacy files: a storage view (view key, element offset, element count) of the root.
    _, offset, view_size = view_metadata
    offset, view_size = as_int(offset, "view offset"), as_int(view_size, "view size")
    return _StorageRef(key, dtype, view_size, (offset * dtype.itemsize, view_size * dtype.itemsize))


def _as_str(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("latin1")
  if isinstance(value, (str, int)):
    return str(value)
  raise ValueError(f"{value!r} is not a name")


def _materialise(ref: _TensorRef, raw: bytes | memoryview, byteorder: str, name: str,
                 path: str) -> np.ndarray:
  """The numpy array `ref` describes, read from its storage's bytes `raw`."""
  dtype = ref.dtype
  label = f"tensor {name!r}" if name else "the tensor"
  if dtype.code is None:
    raise fail(path, f"{label} has dtype {dtype!r}, which numpy cannot represent")
  if ref.storage.view is not None:
    start, length = ref.storage.view
    if start < 0 or start + length > len(raw):
      raise fail(path, f"{label} views bytes [{start}, {start + length}) of storage "
                  f"{ref.storage.key!r}, which holds only {len(raw)} bytes")
    raw = memoryview(raw)[start:start + length]
  if any(d < 0 for d in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
    raise fail(path, f"{label} has a negative size, stride or offset: size {ref.size}, "
                f"stride {ref.stride}, offset {ref.offset}")
  if len(ref.size) != len(ref.stride):
    raise fail(path, f"{label} has size {ref.size} but stride {ref.stride}")
  available = len(raw) // dtype.itemsize
  if math.prod(ref.size) == 0:
    values = np.zeros(ref.size, dtype.storage_dtype(byteorder))
  else:
    needed = ref.offset + 1 + sum((d - 1) * s for d, s in zip(ref.size, ref.stride))
    if needed > available:
      raise fail(path, f"{label} (size {ref.size}, stride {ref.stride}, offset {ref.offset}) "
                  f"needs {needed} {dtype.name} elements but its storage {ref.storage.key!r} "
                  f"holds only {available}")
    flat = np.frombuffer(raw, dtype.storage_dtype(byteorder), count=available)
    values = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=[s * dtype.itemsize for s in ref.stride],
        writeable=False)
  out = dtype.to_native(values)
  if ref.conjugate:
    out = np.conj(out)
  if ref.negate:
    out = np.negative(out)
  return out


def _flatten(obj: Any, load: Callable[[_TensorRef, str], np.ndarray], path: str
             ) -> dict[str, np.ndarray]:
  """'.'-joined name -> array for every tensor in `obj`; other leaves are dropped."""
  out: dict[str, np.ndarray] = {}
  active: set[int] = set()  # containers on the current path (a pickle can hold cycles)

  def visit(node: Any, parts: tuple[str, ...]):
    if isinstance(node, _TensorRef):
      name = ".".join(parts)
      if name in out:
        raise fail(path, f"two tensors flatten to the same name {name!r}")
      out[name] = load(node, name)
      return
    if isinstance(node, dict):
      items = [(_key(k), v) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
      items = [(str(i), v) for i, v in enumerate(node)]
    else:
      return
    if id(node) in active:
      return
    active.add(id(node))
    for k, v in items:
      visit(v, parts + (k,))
    active.discard(id(node))

  visit(obj, ())
  return out


def _key(key: Any) -> str:
  return key.decode("latin1") if isinstance(key, bytes) else str(key)


def read_zip(path: str) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl")
                                                       and n.count("/") == 1)]
    if len(pickles) != 1:
      raise fail(path, f"a zip archive with {len(pickles)} top-level data.pkl records (expected "
                  "1): not a torch.save file")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = zf.read(prefix + "byteorder").decode("latin1").strip()
      if byteorder not in ("little", "big"):
        raise fail(path, f"unknown byteorder record {byteorder!r}")
    unpickler = _TorchUnpickler(io.BytesIO(zf.read(pickles[0])), path)
    obj = unpickler.load()
    cache: dict[str, bytes] = {}

    def load(ref: _TensorRef, name: str) -> np.ndarray:
      key = ref.storage.key
      if key not in cache:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise fail(path, f"storage record {record!r} is missing")
        cache[key] = zf.read(record)
      return _materialise(ref, cache[key], byteorder, name, path)

    return _flatten(obj, load, path)


def read_legacy(path: str) -> dict[str, np.ndarray]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    if PlainUnpickler(f, path).load() != TORCH_MAGIC:
      raise fail(path, "bad torch magic number")
    version = PlainUnpickler(f, path).load()
    if version != _TORCH_LEGACY_PROTOCOL:
      raise fail(path, f"unsupported legacy protocol version {version!r}")
    if not isinstance(PlainUnpickler(f, path).load(), dict):
      raise fail(path, "the sys-info record is not a dict")
    unpickler = _TorchUnpickler(f, path)
    obj = unpickler.load()
    keys = PlainUnpickler(f, path).load()
    if not isinstance(keys, list):
      raise fail(path, "the storage key list is not a list")
    records: dict[str, tuple[int, int]] = {}
    for key in keys:
      key = _as_str(key)
      storage = unpickler.storages.get(key)
      if storage is None:
        raise fail(path, f"storage {key!r} is listed but no tensor references it")
      count = f.read(8)
      if len(count) != 8:
        raise fail(path, f"truncated: the file ends before storage {key!r}")
      numel = int.from_bytes(count, "little", signed=True)
      start, nbytes = f.tell(), numel * storage.dtype.itemsize
      if numel < 0 or start + nbytes > size:
        raise fail(path, f"truncated: storage {key!r} needs {nbytes} bytes from offset {start} "
                    f"but the file has {size} bytes")
      records[key] = (start, nbytes)
      f.seek(start + nbytes)
    cache: dict[str, bytes] = {}

    def load(ref: _TensorRef, name: str) -> np.ndarray:
      key = ref.storage.key
      if key not in cache:
        if key not in records:
          raise fail(path, f"storage {key!r} of tensor {name!r} is not in the storage list")
        start, nbytes = records[key]
        f.seek(start)
        cache[key] = f.read(nbytes)
      return _materialise(ref, cache[key], "little", name, path)

    return _flatten(obj, load, path)
