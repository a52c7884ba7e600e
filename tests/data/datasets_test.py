"""The dataset registry and its one schema: the synthetic world read as a RecDataset, cold-start
videos derived from publish times, one-line errors for unknown names and splits."""

import os
import tempfile

import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.data import datasets
from vidrec_jax.data import world as world_lib
from vidrec_jax.registry import UnknownNameError


class _Source:  # a split's record source: random access by lists of indices
  def __init__(self, rows):
    self.rows, self.reads = rows, []

  def __len__(self):
    return len(self.rows)

  def __getitems__(self, idx):
    self.reads.append(len(idx))
    return [self.rows[i] for i in idx]


class DatasetsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.world_cfg = helpers.load_config().data.dataset
    cls.ds = datasets.get(cls.world_cfg, helpers.smoke_world_dir())

  def test_the_schema(self):
    ds, c = self.ds, self.world_cfg
    self.assertEqual(len(ds.catalog), c.num_videos)
    self.assertEqual(set(ds.splits), {"train", "valid", "test"})
    self.assertEqual(ds.label_columns, ("click", "watch_time", "like"))
    self.assertEqual(ds.capabilities, {datasets.ORACLE, datasets.VIDEO_FILES,
                                       datasets.IMPRESSIONS, datasets.POSITIONS})
    self.assertTrue(set(ds.catalog.content_type) <= set(world_lib.CONTENT_TYPES))
    self.assertTrue(all(p.endswith((".mp4", ".avi", ".flv")) for p in ds.catalog.paths))
    cols = ds.split("test").columns
    for k in ("user_id", "video_id", "timestamp", "oracle_prob") + ds.label_columns:
      self.assertLen(cols[k], len(ds.split("test")))

  def test_columns_are_read_a_chunk_at_a_time_with_the_same_values(self):
    Source = _Source  # pylint: disable=invalid-name
    rows = [{"user_id": i, "title": b"x" * (i % 5), "watch": i / 3.0} for i in range(10)]
    source = Source(rows)
    split = datasets.schema.Split("train", source)
    split.COLUMN_CHUNK = 4
    cols = split.columns
    self.assertEqual(source.reads, [4, 4, 2])  # never every record at once
    for k in rows[0]:
      want = np.asarray([r[k] for r in rows])
      np.testing.assert_array_equal(cols[k], want)
      self.assertEqual(cols[k].dtype, want.dtype)  # widths from the longest chunk, as whole
    self.assertEqual(datasets.schema.Split("valid", Source([])).columns, {})

  def test_columns_are_stored_once_then_mapped_from_disk(self):
    rows = [{"user_id": i, "title": b"t" * (i % 3), "watch": i / 3.0} for i in range(7)]
    folder = os.path.join(tempfile.mkdtemp(), "columns", "train")
    first = datasets.schema.Split("train", _Source(rows), folder).columns
    source = _Source(rows)
    again = datasets.schema.Split("train", source, folder).columns
    self.assertEqual(source.reads, [])  # not decoded again
    for k in rows[0]:
      self.assertIsInstance(again[k], np.memmap)
      self.assertFalse(again[k].flags.writeable)
      np.testing.assert_array_equal(again[k], first[k])
      self.assertEqual(again[k].dtype, first[k].dtype)
    # Stored for another number of records: decoded, not trusted.
    fewer = _Source(rows[:5])
    cols = datasets.schema.Split("train", fewer, folder).columns
    self.assertNotEqual(fewer.reads, [])
    np.testing.assert_array_equal(cols["user_id"], np.arange(5))
    # A folder that cannot be written: decoded each time, no error, nothing left behind.
    blocked = tempfile.mkdtemp()
    with open(os.path.join(blocked, "file"), "w"):
      pass
    unwritable = os.path.join(blocked, "file", "train")  # its parent is a file
    for _ in range(2):
      source = _Source(rows)
      cols = datasets.schema.Split("train", source, unwritable).columns
      self.assertNotEqual(source.reads, [])
      np.testing.assert_array_equal(cols["watch"], [r["watch"] for r in rows])

  def test_cold_start_comes_from_publish_times(self):
    ds = self.ds
    world = world_lib.World(self.world_cfg)
    np.testing.assert_array_equal(ds.catalog.cold, [v.cold for v in world.videos])
    np.testing.assert_array_equal(ds.catalog.cold, ds.catalog.publish_time >= ds.train_end)
    self.assertTrue(ds.catalog.cold.any() and not ds.catalog.cold.all())
    train = ds.split("train").columns
    self.assertFalse(ds.catalog.cold[train["video_id"]].any())  # never seen in training
    self.assertLess(train["timestamp"].max(), ds.train_end)
    test = ds.split("test").columns  # the world's own per-impression flag agrees
    np.testing.assert_array_equal(ds.catalog.cold[test["video_id"]], test["cold"] == 1)
    np.testing.assert_array_equal(datasets.cold_start(np.array([0.0, 5.0, 9.9]), 5.0),
                                  [False, True, True])

  def test_unknown_names_are_one_line(self):
    with self.assertRaisesRegex(UnknownNameError, "unknown dataset 'movielens'; registered: "
                                ".*synthetic"):
      datasets.get({"name": "movielens"}, "/tmp")
    with self.assertRaisesRegex(datasets.DataError, "dataset 'synthetic' has no split 'dev'; "
                                "it has train, valid, test"):
      self.ds.split("dev")


if __name__ == "__main__":
  absltest.main()
