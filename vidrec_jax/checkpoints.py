"""Read PyTorch (`.pth`/`.pt`) and safetensors checkpoints into numpy, without torch.

Public API:
  read(path) -> dict[str, np.ndarray]: any supported file, recognised by its content.
  read_torch(path) -> dict[str, np.ndarray]: a `torch.save` file, zip or legacy format.
  read_safetensors(path) -> dict[str, np.ndarray]: a `.safetensors` file.
  UnsafeCheckpointError: the pickle inside a PyTorch file references a global we refuse.

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
  * safetensors: an 8-byte little-endian header length, a JSON header mapping each name to its
    dtype, shape and `data_offsets` (relative to the end of the header), then the data.

Safety: the pickles are never executed as pickles normally are. A restricted unpickler maps the
few globals a state dict needs (the `torch._utils._rebuild_*` tensor functions, the storage
types, `collections.OrderedDict`, `torch.Size`, the torch dtypes and `_codecs.encode`, which
protocol 2 uses for `bytes`) to local stand-ins that only record shapes, strides and storage
keys; any other global raises `UnsafeCheckpointError` before anything is called. Tensor data is
then read directly from the storage bytes.

Output: the pickled object is flattened into '.'-joined names (a state dict nested as
{'state_dict': {...}} gives 'state_dict.conv.weight'; lists and tuples use their indices); leaves
that are not tensors (ints, floats, strings, None, bytes) are dropped; a bare top-level tensor is
returned under the name ''. Every array is a native-endian, C-contiguous copy owned by the
caller. Integer buffers such as `num_batches_tracked` (int64, shape ()) are kept. numpy has no
bfloat16, so bfloat16 tensors come back as float32 (exactly: bf16 is the top half of a float32);
complex and unsigned dtypes map to their numpy equivalents; float8 and other exotic dtypes are
refused with a ValueError.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import pickle
import zipfile
from typing import Any, Callable

import numpy as np

__all__ = ["UnsafeCheckpointError", "read", "read_safetensors", "read_torch"]

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces


class UnsafeCheckpointError(ValueError):
  """A checkpoint's pickle references a global outside the tensor-loading allow-list."""


class _FormatError(ValueError):
  """A malformed checkpoint; the message already names the file."""


def _one_line(text: Any) -> str:
  return " ".join(str(text).split())


def _fail(path: str, what: str) -> _FormatError:
  return _FormatError(f"{path}: {_one_line(what)}")


# ----------------------------------------------------------------------------------------------
# dtypes


class _Sealed:
  """Refuses the pickle BUILD opcode: the stand-ins below are shared by every read, so a pickle
  must not be able to change their attributes (BUILD calls `__setstate__` when it exists)."""

  def __setstate__(self, state):
    raise ValueError(f"the pickle tries to set attributes on {self!r}")


class _DType(_Sealed):
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


_DTYPES: dict[str, _DType] = {d.name: d for d in (
    _DType("float64", "f8", 8), _DType("float32", "f4", 4), _DType("float16", "f2", 2),
    _DType("bfloat16", "u2", 2), _DType("int64", "i8", 8), _DType("int32", "i4", 4),
    _DType("int16", "i2", 2), _DType("int8", "i1", 1), _DType("uint8", "u1", 1),
    _DType("bool", "b1", 1), _DType("complex64", "c8", 8), _DType("complex128", "c16", 16),
    _DType("uint16", "u2", 2), _DType("uint32", "u4", 4), _DType("uint64", "u8", 8))}
# torch dtypes numpy cannot represent: accepted by the unpickler, refused when a tensor needs one.
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
              "float8_e8m0fnu", "float4_e2m1fn_x2", "complex32", "bits8", "bits16", "bits1x8",
              "bits2x4", "bits4x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4"):
  _DTYPES[_name] = _DType(_name, None, 0)
_DTYPES["float"], _DTYPES["double"], _DTYPES["half"] = (_DTYPES["float32"], _DTYPES["float64"],
                                                        _DTYPES["float16"])
_DTYPES["long"], _DTYPES["int"], _DTYPES["short"] = (_DTYPES["int64"], _DTYPES["int32"],
                                                     _DTYPES["int16"])

_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128"}

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "C64": "complex64"}


# ----------------------------------------------------------------------------------------------
# Stand-ins for the globals a state-dict pickle may reference. None of them touches torch.


class _StorageType(_Sealed):
  """Stand-in for a torch storage class such as torch.FloatStorage (or the untyped storage)."""

  def __init__(self, name: str, dtype: _DType):
    self.name = name
    self.dtype = dtype

  def __repr__(self) -> str:
    return self.name

  def __call__(self, *args, **kwargs):
    raise ValueError(f"the pickle instantiates storage type {self.name} directly")


class _StorageRef(_Sealed):
  """A storage named by a persistent id: its key, element type and (legacy) view window."""

  def __init__(self, key: str, dtype: _DType, numel: int, view: tuple[int, int] | None = None):
    self.key = key
    self.dtype = dtype
    self.numel = numel
    self.view = view  # (byte offset, byte length) into the root storage, or None


class _TensorRef(_Sealed):
  """A tensor the pickle rebuilds: storage plus element offset, shape and strides."""

  def __init__(self, storage: Any, offset: Any, size: Any, stride: Any,
               dtype: _DType | None = None, metadata: Any = None):
    if not isinstance(storage, _StorageRef):
      raise ValueError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    self.storage = storage
    self.dtype = dtype if dtype is not None else storage.dtype
    self.offset = _as_int(offset, "storage offset")
    self.size = tuple(_as_int(s, "size") for s in size)
    self.stride = tuple(_as_int(s, "stride") for s in stride)
    self.negate = isinstance(metadata, dict) and bool(metadata.get("neg"))
    self.conjugate = isinstance(metadata, dict) and bool(metadata.get("conj"))


def _as_int(value: Any, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"tensor {what} {value!r} is not an integer")
  return value


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks
  return _TensorRef(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  del requires_grad, backward_hooks
  if not isinstance(dtype, _DType):
    raise ValueError(f"tensor dtype {dtype!r} is not a torch dtype")
  return _TensorRef(storage, storage_offset, size, stride, dtype=dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  if not isinstance(data, _TensorRef):
    raise ValueError(f"parameter rebuilt from {type(data).__name__}, not a tensor")
  return data


def _size(dims=()):
  return tuple(_as_int(d, "size") for d in dims)


def _encode(text, encoding="utf-8", errors="strict"):
  """`_codecs.encode` as protocol 2 uses it for bytes objects; text codecs only."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
    raise ValueError(f"_codecs.encode with {type(text).__name__} / {encoding!r} is not allowed")
  return text.encode(encoding, errors if errors in ("strict", "ignore", "replace") else "strict")


class _Function(_Sealed):
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
  for name, dtype in _STORAGE_DTYPES.items():
    for module in ("torch", "torch.cuda"):
      table[(module, name)] = _StorageType(f"{module}.{name}", _DTYPES[dtype])
  for module in ("torch", "torch.storage"):
    for name in ("UntypedStorage", "_UntypedStorage"):
      table[(module, name)] = _StorageType(f"{module}.{name}", _DTYPES["uint8"])
  for name, dtype in _DTYPES.items():
    table[("torch", name)] = dtype
  return table


_ALLOWED = _allowed_globals()


class _PlainUnpickler(pickle.Unpickler):
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


class _TorchUnpickler(_PlainUnpickler):
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
    numel = _as_int(numel, "storage size")
    if key not in self.storages:
      self.storages[key] = _StorageRef(key, dtype, numel)
    if view_metadata is None:
      return _StorageRef(key, dtype, numel)
    # Pre-1.0 legacy files: a storage view (view key, element offset, element count) of the root.
    _, offset, view_size = view_metadata
    offset, view_size = _as_int(offset, "view offset"), _as_int(view_size, "view size")
    return _StorageRef(key, dtype, view_size, (offset * dtype.itemsize, view_size * dtype.itemsize))


def _as_str(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("latin1")
  if isinstance(value, (str, int)):
    return str(value)
  raise ValueError(f"{value!r} is not a name")


# ----------------------------------------------------------------------------------------------
# Materialising tensors


def _materialise(ref: _TensorRef, raw: bytes | memoryview, byteorder: str, name: str,
                 path: str) -> np.ndarray:
  """The numpy array `ref` describes, read from its storage's bytes `raw`."""
  dtype = ref.dtype
  label = f"tensor {name!r}" if name else "the tensor"
  if dtype.code is None:
    raise _fail(path, f"{label} has dtype {dtype!r}, which numpy cannot represent")
  if ref.storage.view is not None:
    start, length = ref.storage.view
    if start < 0 or start + length > len(raw):
      raise _fail(path, f"{label} views bytes [{start}, {start + length}) of storage "
                  f"{ref.storage.key!r}, which holds only {len(raw)} bytes")
    raw = memoryview(raw)[start:start + length]
  if any(d < 0 for d in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
    raise _fail(path, f"{label} has a negative size, stride or offset: size {ref.size}, "
                f"stride {ref.stride}, offset {ref.offset}")
  if len(ref.size) != len(ref.stride):
    raise _fail(path, f"{label} has size {ref.size} but stride {ref.stride}")
  available = len(raw) // dtype.itemsize
  if math.prod(ref.size) == 0:
    values = np.zeros(ref.size, dtype.storage_dtype(byteorder))
  else:
    needed = ref.offset + 1 + sum((d - 1) * s for d, s in zip(ref.size, ref.stride))
    if needed > available:
      raise _fail(path, f"{label} (size {ref.size}, stride {ref.stride}, offset {ref.offset}) "
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
        raise _fail(path, f"two tensors flatten to the same name {name!r}")
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


# ----------------------------------------------------------------------------------------------
# Formats


def _sniff(path: str) -> str:
  """'zip', 'legacy', 'safetensors', or raises for anything else."""
  try:
    size = os.path.getsize(path)
  except FileNotFoundError:
    raise FileNotFoundError(errno.ENOENT, "checkpoint file not found", path) from None
  if size == 0:
    raise _fail(path, "the file is empty, not a checkpoint")
  with open(path, "rb") as f:
    head = f.read(256)
  if head[:4] in _ZIP_MAGICS:
    return "zip"
  if len(head) >= 9 and head[8:9] == b"{":
    header_len = int.from_bytes(head[:8], "little")
    if 2 <= header_len <= _SAFETENSORS_MAX_HEADER:
      return "safetensors"
  if head[:1] == b"\x80" or head.startswith(b"L%d" % _TORCH_MAGIC):  # protocol >= 2, or 0/1
    try:
      magic = _PlainUnpickler(io.BytesIO(head), path).load()
    except UnsafeCheckpointError:
      raise
    except Exception:  # any failure just means "not the torch magic number"
      magic = None
    if magic == _TORCH_MAGIC:
      return "legacy"
    if head[:1] == b"\x80":
      raise _fail(path, "a pickle without the torch magic number: not written by torch.save, "
                  "or truncated")
  if len(head) > 257 + 5 and head[257:262] == b"ustar":
    raise _fail(path, "a tar archive (pre-0.4 torch.save format?), which is not supported")
  raise _fail(path, "not a PyTorch (zip or legacy pickle) or safetensors checkpoint "
              f"(starts with {head[:8]!r})")


def _guarded(path: str, reader: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Runs `reader`, turning low-level failures into a one-line ValueError naming `path`."""
  try:
    return reader()
  except (UnsafeCheckpointError, _FormatError, OSError):
    raise
  except zipfile.BadZipFile as e:
    raise _fail(path, f"corrupt or truncated zip archive ({_one_line(e)})") from e
  except Exception as e:  # pickle, struct, json, numpy internals
    raise _fail(path, f"corrupt or truncated checkpoint ({type(e).__name__}: {_one_line(e)})"
                ) from e


def _read_zip(path: str) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl")
                                                       and n.count("/") == 1)]
    if len(pickles) != 1:
      raise _fail(path, f"a zip archive with {len(pickles)} top-level data.pkl records (expected "
                  "1): not a torch.save file")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = zf.read(prefix + "byteorder").decode("latin1").strip()
      if byteorder not in ("little", "big"):
        raise _fail(path, f"unknown byteorder record {byteorder!r}")
    unpickler = _TorchUnpickler(io.BytesIO(zf.read(pickles[0])), path)
    obj = unpickler.load()
    cache: dict[str, bytes] = {}

    def load(ref: _TensorRef, name: str) -> np.ndarray:
      key = ref.storage.key
      if key not in cache:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise _fail(path, f"storage record {record!r} is missing")
        cache[key] = zf.read(record)
      return _materialise(ref, cache[key], byteorder, name, path)

    return _flatten(obj, load, path)


def _read_legacy(path: str) -> dict[str, np.ndarray]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    if _PlainUnpickler(f, path).load() != _TORCH_MAGIC:
      raise _fail(path, "bad torch magic number")
    version = _PlainUnpickler(f, path).load()
    if version != _TORCH_LEGACY_PROTOCOL:
      raise _fail(path, f"unsupported legacy protocol version {version!r}")
    if not isinstance(_PlainUnpickler(f, path).load(), dict):
      raise _fail(path, "the sys-info record is not a dict")
    unpickler = _TorchUnpickler(f, path)
    obj = unpickler.load()
    keys = _PlainUnpickler(f, path).load()
    if not isinstance(keys, list):
      raise _fail(path, "the storage key list is not a list")
    records: dict[str, tuple[int, int]] = {}
    for key in keys:
      key = _as_str(key)
      storage = unpickler.storages.get(key)
      if storage is None:
        raise _fail(path, f"storage {key!r} is listed but no tensor references it")
      count = f.read(8)
      if len(count) != 8:
        raise _fail(path, f"truncated: the file ends before storage {key!r}")
      numel = int.from_bytes(count, "little", signed=True)
      start, nbytes = f.tell(), numel * storage.dtype.itemsize
      if numel < 0 or start + nbytes > size:
        raise _fail(path, f"truncated: storage {key!r} needs {nbytes} bytes from offset {start} "
                    f"but the file has {size} bytes")
      records[key] = (start, nbytes)
      f.seek(start + nbytes)
    cache: dict[str, bytes] = {}

    def load(ref: _TensorRef, name: str) -> np.ndarray:
      key = ref.storage.key
      if key not in cache:
        if key not in records:
          raise _fail(path, f"storage {key!r} of tensor {name!r} is not in the storage list")
        start, nbytes = records[key]
        f.seek(start)
        cache[key] = f.read(nbytes)
      return _materialise(ref, cache[key], "little", name, path)

    return _flatten(obj, load, path)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise _fail(path, "truncated: shorter than the 8-byte safetensors header length")
    header_len = int.from_bytes(head, "little")
    if header_len > size - 8:
      raise _fail(path, f"truncated: the safetensors header claims {header_len} bytes but only "
                  f"{size - 8} follow")
    try:
      header = json.loads(f.read(header_len).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise _fail(path, f"the safetensors header is not valid JSON ({_one_line(e)})") from e
    if not isinstance(header, dict):
      raise _fail(path, "the safetensors header is not a JSON object")
    data_start, data_len = 8 + header_len, size - 8 - header_len
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
      if name == "__metadata__":
        continue
      try:
        code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        shape = tuple(_as_int(d, "size") for d in shape)
        begin, end = _as_int(begin, "offset"), _as_int(end, "offset")
      except (KeyError, TypeError, ValueError) as e:
        raise _fail(path, f"bad safetensors entry for {name!r}: {info!r} ({e})") from e
      if code not in _SAFETENSORS_DTYPES:
        raise _fail(path, f"tensor {name!r} has dtype {code!r}, which is not supported")
      dtype = _DTYPES[_SAFETENSORS_DTYPES[code]]
      if any(d < 0 for d in shape):
        raise _fail(path, f"tensor {name!r} has a negative dimension in {shape}")
      nbytes = math.prod(shape) * dtype.itemsize
      if not 0 <= begin <= end or end - begin != nbytes:
        raise _fail(path, f"tensor {name!r} ({code} {list(shape)}) needs {nbytes} bytes but its "
                    f"data_offsets are [{begin}, {end}]")
      if end > data_len:
        raise _fail(path, f"truncated: tensor {name!r} needs data bytes [{begin}, {end}) but only "
                    f"{data_len} are present")
      f.seek(data_start + begin)
      raw = f.read(nbytes)
      values = np.frombuffer(raw, dtype.storage_dtype("little")).reshape(shape)
      out[name] = dtype.to_native(values)
    return out


# ----------------------------------------------------------------------------------------------
# Public API


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
    raise _fail(path, "a safetensors file, not a torch.save file: use read_safetensors or read")
  return _guarded(path, lambda: _read_zip(path) if kind == "zip" else _read_legacy(path))


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
    raise _fail(path, f"not a safetensors file (looks like a {kind} PyTorch checkpoint)")
  return _guarded(path, lambda: _read_safetensors(path))


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
    return _guarded(path, lambda: _read_safetensors(path))
  return _guarded(path, lambda: _read_zip(path) if kind == "zip" else _read_legacy(path))

