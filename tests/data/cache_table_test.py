"""The feature cache read by record (data/features.py CacheTable): the same entries as the
shards hold, an index beside each shard, caches from before indexes still read, and a table
that pickles to its indexes only (what each loader worker receives)."""

import os
import pickle
import tempfile

import numpy as np
from absl.testing import absltest
from array_record.python import array_record_module

from vidrec_jax.data import features


def write_cache(cache: str, entries: dict[int, np.ndarray], shards: int = 2) -> None:
  names = []
  ids = sorted(entries)
  for s in range(shards):
    path = features.shard_path(cache, s, shards)
    writer = features.ShardWriter(path)
    for vid in ids[s::shards]:
      writer.write(vid, np.arange(len(entries[vid])), entries[vid])
    writer.close()
    names.append(os.path.basename(path))
  features.write_meta(cache, {"dim": 6, "shards": names})


def entries(videos: int = 40) -> dict[int, np.ndarray]:
  rng = np.random.default_rng(3)
  return {v: rng.normal(size=(int(rng.integers(0, 9)), 6)).astype(np.float32)
          for v in range(videos)}


class CacheTableTest(absltest.TestCase):

  def test_a_cache_written_before_frame_selection_existed_serves_spaced_frames_only(self):
    cache_dir = self.create_tempdir().full_path
    features.write_meta(cache_dir, {"frame_size": 224, "max_frames": 16})
    features.check_meta(cache_dir, {"frame_size": 224, "selection": "spaced"})
    with self.assertRaisesRegex(features.CacheError, "extracted with selection='spaced', the "
                                "config asks for 'middle'") as cm:
      features.check_meta(cache_dir, {"frame_size": 224, "selection": "middle"})
    self.assertNotIn("\n", str(cm.exception))
    features.write_meta(cache_dir, {"frame_size": 224, "selection": "middle"})
    with self.assertRaisesRegex(features.CacheError, "selection='middle'"):
      features.check_meta(cache_dir, {"frame_size": 224, "selection": "spaced"})

  def test_reads_every_entry_by_record_from_the_indexed_shards(self):
    cache, want = tempfile.mkdtemp(), entries()
    write_cache(cache, want)
    index = np.load(features.index_path(features.shard_path(cache, 1, 2)))
    np.testing.assert_array_equal(index[:, 0], sorted(want)[1::2])
    np.testing.assert_array_equal(index[:, 1], [len(want[v]) for v in sorted(want)[1::2]])
    table = features.load_cache(cache)
    self.assertEqual(sorted(table), sorted(want))
    for vid in (7, 0, 39, 7, 12):  # any order, repeats
      np.testing.assert_array_equal(table[vid], want[vid])
      self.assertEqual(table.frames(vid), len(want[vid]))
    self.assertNotIn(40, table)
    self.assertIsNone(table.get(40))
    self.assertEqual({v: len(x) for v, x in table.items()}, {v: len(x) for v, x in want.items()})

  def test_a_cache_without_indexes_is_indexed_by_one_pass(self):
    cache, want = tempfile.mkdtemp(), entries(10)
    path = features.shard_path(cache, 0, 1)
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for vid, x in want.items():  # the format before indexes
      writer.write(features.encode_record(vid, np.arange(len(x)), x))
    writer.close()
    features.write_meta(cache, {"dim": 6, "shards": [os.path.basename(path)]})
    table = features.load_cache(cache)
    self.assertEqual(table.frames(4), len(want[4]))
    np.testing.assert_array_equal(table[9], want[9])

  def test_pickles_to_its_indexes_and_reopens_its_readers(self):
    cache, want = tempfile.mkdtemp(), entries(400)
    write_cache(cache, {v: np.tile(x, (1, 50)) for v, x in want.items()})
    table = features.load_cache(cache)
    _ = table[5]  # readers open
    data = pickle.dumps(table)
    shard_bytes = sum(os.path.getsize(os.path.join(cache, s))
                      for s in features.read_meta(cache)["shards"])
    self.assertLess(len(data), shard_bytes / 20)  # no entries travel to a worker
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy[399], np.tile(want[399], (1, 50)))

  def test_lru_keeps_the_most_recently_used(self):
    lru = features.LRU(2)
    lru.put(1, "a")
    lru.put(2, "b")
    self.assertEqual(lru.lookup(1), "a")  # 1 is now the most recent
    lru.put(3, "c")
    self.assertEqual(sorted(lru.keys()), [1, 3])
    self.assertIsNone(lru.lookup(2))
    copy = pickle.loads(pickle.dumps(lru))  # what a loader worker receives: empty, same size
    self.assertEqual((len(copy), copy.size), (0, 2))
    copy.put(4, "d")
    self.assertEqual(copy.lookup(4), "d")
    off = features.LRU(0)
    off.put(1, "a")
    self.assertEmpty(off)


if __name__ == "__main__":
  absltest.main()
