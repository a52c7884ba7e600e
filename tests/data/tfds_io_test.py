"""tfds_io.canonicalize: every record rewritten with deterministic serialisation, in order, a
chunk at a time."""

import os
import tempfile
from unittest import mock

from absl.testing import absltest
from array_record.python import array_record_module
from tensorflow_datasets.proto import tf_example_pb2 as example_pb2

from vidrec_jax.data import tfds_io


def _example(i: int) -> example_pb2.Example:
  e = example_pb2.Example()
  e.features.feature["user_id"].int64_list.value.append(i)
  e.features.feature["title"].bytes_list.value.append(b"t" * (i % 4))
  e.features.feature["watch"].float_list.value.append(i / 3.0)
  return e


class CanonicalizeTest(absltest.TestCase):

  def test_records_are_rewritten_in_order_a_chunk_at_a_time(self):
    root = tempfile.mkdtemp()
    folder = os.path.join(root, "ds", "cfg", "1.0.0")
    os.makedirs(folder)
    path = os.path.join(folder, "ds-train.array_record-00000-of-00001")
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for i in range(10):
      writer.write(_example(i).SerializeToString())
    writer.close()
    reads = []
    real = array_record_module.ArrayRecordReader

    class Reader(real):  # records how many records each read returns
      def read(self, *args):
        out = super().read(*args)
        reads.append(len(out))
        return out

    with mock.patch.object(tfds_io, "CANONICAL_CHUNK", 4), \
        mock.patch.object(tfds_io.array_record_module, "ArrayRecordReader", Reader):
      tfds_io.canonicalize(root, "ds", "1.0.0")
    self.assertEqual(reads, [4, 4, 2])  # never the whole shard at once
    reader = real(path)
    got = reader.read_all()
    reader.close()
    self.assertEqual(got, [_example(i).SerializeToString(deterministic=True)
                           for i in range(10)])


if __name__ == "__main__":
  absltest.main()
