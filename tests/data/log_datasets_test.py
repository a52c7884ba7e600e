"""Datasets of logged interactions: the leave-one-out split against a hand-computed miniature,
MovieLens-100K in both file layouts, and a video folder with every kind of bad input reported
and skipped while nothing else is lost."""

import os
import shutil
import tempfile

import ml_collections
import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import datasets
from vidrec_jax.data.datasets import logs
from vidrec_jax.data.datasets import movielens


def _prepare(name: str, path: str):
  args = ml_collections.ConfigDict(dict(name=name, path=path, min_interactions=0, keep_last=0))
  data_dir = tempfile.mkdtemp()
  datasets.DATASETS.get(name).prepare(data_dir, args)
  return datasets.get(args, data_dir)


def _by_order(split):
  c = split.columns
  o = np.argsort(c["order"])
  return {k: v[o] for k, v in c.items()}


class LeaveOneOutTest(absltest.TestCase):

  def test_split_of_a_miniature(self):
    # users a, b, c, d in time order; a has 4 interactions, b 2, c 1, d 3 (two at one time).
    user = np.array([0, 1, 0, 0, 1, 2, 0, 3, 3, 3])
    np.testing.assert_array_equal(logs.leave_one_out(user),
                                  [0, 0, 0, 1, 2, 0, 2, 0, 1, 2])

  def test_tables_order_ties_in_input_order_and_publish_at_first_interaction(self):
    t = logs.LogSource.tables(
        movielens.MovieLens100K(), dict(min_interactions=0, keep_last=0),
        np.array(["10", "2", "7"]), np.array(["A", "B", "C"]),
        np.array(["", "", ""]), np.array(["", "", ""]),
        user_rows=np.array(["u1", "u2", "u1", "u1", "u2"]),
        item_rows=np.array(["10", "2", "7", "2", "10"]),
        time_rows=np.array([5, 3, 5, 9, 1]))
    self.assertEqual(list(t.item_raw), ["2", "7", "10"])  # numeric ids sort as numbers
    self.assertEqual(list(t.title), ["B", "C", "A"])
    # Chronological: u2@1 (10), u2@3 (2), u1@5 (10), u1@5 (7) [input order], u1@9 (2).
    np.testing.assert_array_equal(t.item, [2, 0, 2, 1, 0])
    np.testing.assert_array_equal(t.timestamp, [1, 3, 5, 5, 9])
    np.testing.assert_array_equal(t.split, [0, 2, 0, 1, 2])
    np.testing.assert_array_equal(t.publish_time, [3, 5, 1])

  def test_rows_keep_each_id_once_and_drop_exact_duplicates_after_their_first(self):
    rows = logs.Rows()
    data = [("u1", "10", 5), ("u2", "2", 3), ("u1", "10", 5), ("u1", "7", 5), ("u2", "2", 4),
            ("u1", "10", 5), ("u2", "2", 3)]
    for n, (u, i, t) in enumerate(data, start=2):
      rows.add(u, i, t, n)
    for n in range(20):
      rows.bad.add(f"line {100 + n}")
    users, items, times = rows.finish()
    dup = rows.duplicates
    self.assertEqual(list(users.vocab), ["u1", "u2"])  # each distinct id once
    self.assertEqual(list(items.vocab), ["10", "2", "7"])
    kept = [(users.vocab[u], items.vocab[i], t)
            for u, i, t in zip(users.codes, items.codes, times)]
    self.assertEqual(kept, [data[k] for k in (0, 1, 3, 4)])  # file order, first kept
    self.assertLen(dup, 3)
    self.assertEqual(dup.names, ["line 4 (u1, 10, 5)", "line 7 (u1, 10, 5)",
                                 "line 8 (u2, 2, 3)"])
    # A corrupt file's bad rows are counted, not all kept: the report names the first five.
    self.assertLen(rows.bad, 20)
    self.assertEqual(rows.bad.names, [f"line {100 + n}" for n in range(5)])
    with self.assertLogs(level="WARNING") as out:
      logs.report("bad rows", "f.csv", rows.bad)
    self.assertIn("f.csv: 20 bad rows skipped (first: line 100; line 101; line 102; line 103; "
                  "line 104)", out.output[0])

  def test_coded_rows_give_the_same_tables_as_raw_ids(self):
    user = np.array(["u3", "u1", "u2", "u1", "u3", "u1", "u2", "u1", "u3", "u1"])
    item = np.array(["10", "2", "7", "2", "10", "9", "7", "10", "2", "7"])
    time = np.array([5, 3, 5, 9, 1, 2, 2, 7, 8, 4])
    rows = logs.Rows()
    for n, (u, i, t) in enumerate(zip(user, item, time)):
      rows.add(str(u), str(i), int(t), n)
    coded_user, coded_item, coded_time = rows.finish()
    meta = (np.array(["10", "2", "7", "99"]), np.array(["A", "B", "C", "D"]),
            np.full(4, ""), np.full(4, ""))
    for filtering in (dict(min_interactions=0, keep_last=0),
                      dict(min_interactions=3, keep_last=2)):
      a = logs.LogSource.tables(movielens.MovieLens100K(), filtering, *meta, user, item, time)
      b = logs.LogSource.tables(movielens.MovieLens100K(), filtering, *meta, coded_user,
                                coded_item, coded_time)
      for f in ("user_raw", "item_raw", "title", "user", "item", "timestamp", "split",
                "publish_time"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    self.assertEqual(list(b.item_raw), ["2", "7", "10", "99"])  # numbers sort as numbers
    self.assertEqual(list(b.user_raw), ["u1", "u3"])  # u2's two rows filtered out

  def test_user_filter_drops_short_users_then_keeps_each_users_last(self):
    # u1: 5 rows (times 1..5, one tie at 3), u2: 2 rows, u3: 4 rows.
    user = np.array(["u1", "u2", "u1", "u3", "u1", "u3", "u1", "u3", "u2", "u1", "u3"])
    time = np.array([1, 7, 3, 2, 2, 4, 3, 6, 8, 5, 9])
    np.testing.assert_array_equal(logs.user_filter(user, time, 0, 0), np.ones(11, bool))
    keep = logs.user_filter(user, time, 4, 0)  # u2 has 2 rows: dropped
    np.testing.assert_array_equal(keep, user != "u2")
    keep = logs.user_filter(user, time, 3, 2)  # MicroLens' shape: min rows, then the last ones
    # u1's last two by time: t=5 and the later of the two t=3 rows (input order breaks ties).
    np.testing.assert_array_equal(np.flatnonzero(keep), [6, 7, 9, 10])
    with self.assertRaisesRegex(ConfigError, "data.dataset.keep_last=-1"):
      movielens.MovieLens100K().validate(dict(name="movielens_100k", path="",
                                              min_interactions=5, keep_last=-1))
    with self.assertRaisesRegex(ConfigError, "data.dataset.min_interactions=None"):
      movielens.MovieLens100K().validate(dict(name="movielens_100k", path=""))

  def test_a_workdir_from_before_the_filtering_arguments_is_reused_and_resumes(self):
    # The stamp leaves the filtering out when it is off (the records are what they were), and
    # the config of record takes the off value for a record without the fields.
    off = dict(name="movielens_100k", path="", min_interactions=0, keep_last=0)
    self.assertEqual(movielens.MovieLens100K()._stamp(off)["args"],
                     {"name": "movielens_100k", "path": ""})
    self.assertIn("keep_last", movielens.MovieLens100K()._stamp(dict(off, keep_last=13))["args"])
    from vidrec_jax.train import trainers  # pylint: disable=g-import-not-at-top
    config = helpers.load_config("smoke", "movielens.py")
    defaults = trainers.record_terms(config).defaults
    self.assertEqual(defaults["data.dataset.min_interactions"], 0)
    self.assertEqual(defaults["data.dataset.keep_last"], 0)


class MovieLensTest(absltest.TestCase):

  def test_the_recbole_copy(self):
    try:
      movielens.folder("")
    except FileNotFoundError as e:
      self.skipTest(str(e))
    ds = _prepare("movielens_100k", "")
    self.assertEqual((len(ds.users), len(ds.catalog)), (943, 1682))
    self.assertEqual({s: len(ds.split(s)) for s in ds.splits},
                     {"train": 98114, "valid": 943, "test": 943})
    self.assertEqual(ds.catalog.title[0], "Toy Story (1995)")
    self.assertEqual(ds.catalog.extra["genres"][0], "Animation Children's Comedy")
    self.assertEqual(ds.capabilities, frozenset())
    test = ds.split("test").columns
    self.assertLen(np.unique(test["user_id"]), 943)  # one test interaction per user
    train = ds.split("train").columns
    for u in (0, 500):  # the test interaction is the user's latest
      self.assertGreaterEqual(test["timestamp"][test["user_id"] == u].min(),
                              train["timestamp"][train["user_id"] == u].max())

  def test_both_file_layouts_give_the_same_dataset(self):
    recbole, grouplens = tempfile.mkdtemp(), tempfile.mkdtemp()
    rows = [("1", "10", "4", "100"), ("1", "20", "3", "50"), ("2", "10", "5", "70"),
            ("1", "30", "1", "200"), ("2", "20", "2", "70"), ("x", "", "3", "1")]
    with open(os.path.join(recbole, "ml-100k.inter"), "w") as f:
      f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
      f.write("".join("\t".join(r) + "\n" for r in rows))
    with open(os.path.join(recbole, "ml-100k.item"), "w") as f:
      f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
              "10\tHeat\t1995\tAction Crime\n20\tBabe\t1995\tComedy\n30\tFargo\t1996\tCrime\n")
    with open(os.path.join(grouplens, "u.data"), "w") as f:
      f.write("".join("\t".join(r) + "\n" for r in rows))
    flags = {"10": (1, 6), "20": (5,), "30": (6,)}  # Action, Crime / Comedy / Crime
    with open(os.path.join(grouplens, "u.item"), "w", encoding="latin-1") as f:
      for item, title in (("10", "Heat (1995)"), ("20", "Babe (1995)"), ("30", "Fargo (1996)")):
        genre = ["1" if g in flags[item] else "0" for g in range(19)]
        f.write("|".join([item, title, "01-Jan-1995", "", "http://x"] + genre) + "\n")
    with self.assertLogs(level="WARNING") as logs_:
      a = _prepare("movielens_100k", recbole)
    self.assertIn("1 rows with a bad id or timestamp skipped (first: line 7", logs_.output[0])
    b = _prepare("movielens_100k", grouplens)
    np.testing.assert_array_equal(a.catalog.title, ["Heat (1995)", "Babe (1995)",
                                                    "Fargo (1996)"])
    np.testing.assert_array_equal(a.catalog.title, b.catalog.title)
    np.testing.assert_array_equal(a.catalog.extra["genres"], b.catalog.extra["genres"])
    for s in ("train", "valid", "test"):
      for k, v in _by_order(a.split(s)).items():
        np.testing.assert_array_equal(v, _by_order(b.split(s))[k], err_msg=f"{s} {k}")
    # user 1: 20@50, 10@100, 30@200 -> train, valid, test; user 2: 10@70, 20@70 -> train, test
    test = _by_order(a.split("test"))
    np.testing.assert_array_equal(a.catalog.extra["raw_id"][test["video_id"]], ["20", "30"])

  def test_unknown_layout_is_one_line(self):
    with self.assertRaisesRegex(datasets.DataError, "holds neither ml-100k.inter"):
      _prepare("movielens_100k", tempfile.mkdtemp())


class VideoFolderTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.made = helpers.make_video_folder(cls.root)

  def _copy(self):
    root = os.path.join(tempfile.mkdtemp(), "folder")
    shutil.copytree(self.root, root)
    return root

  def test_a_clean_folder(self):
    ds = _prepare("video_folder", self.root)
    self.assertLen(ds.catalog, len(self.made["items"]))
    self.assertEqual(ds.capabilities, {datasets.VIDEO_FILES})
    self.assertTrue(all(os.path.isfile(p) for p in ds.catalog.paths))
    self.assertEqual(sum(len(ds.split(s)) for s in ds.splits), 10 * 7)
    # The late items are first seen after every training interaction: cold-start (as is an
    # item no one watched); no cold item is ever in training.
    cold = set(ds.catalog.extra["raw_id"][ds.catalog.cold])
    self.assertTrue(set(self.made["late"]) <= cold)
    self.assertFalse(ds.catalog.cold[ds.split("train").columns["video_id"]].any())

  def test_bad_input_is_reported_and_skipped(self):
    root = self._copy()
    with open(os.path.join(root, "interactions.csv"), "a") as f:
      f.write("u0,bikes00,notatime\n,bikes01,5\nu1,,6\n")
      first = open(os.path.join(root, "interactions.csv")).read().splitlines()[1]
      f.write(first + "\n")  # an exact duplicate
      f.write("u9,unknown_item,99999\n")  # no title, no video: kept with an empty title
    with open(os.path.join(root, "titles.csv"), "a") as f:
      f.write("bikes02,\n")
    os.remove(os.path.join(root, "videos", "bikes03.mp4"))  # missing video
    open(os.path.join(root, "videos", "bikes04.mp4"), "w").close()  # empty video
    with open(os.path.join(root, "videos", "bikes05.mp4"), "r+b") as f:
      f.truncate(300)  # truncated: found when decoded
    with self.assertLogs(level="WARNING") as logs_:
      ds = _prepare("video_folder", root)
    text = "\n".join(logs_.output)
    for needle in ("3 rows with an empty id or a timestamp that is not an integer skipped",
                   "1 duplicate rows skipped", "1 title rows without an item id or a title",
                   "items have no title and keep an empty one (first: unknown_item)",
                   "have no video file and keep their ID and title features (first: bikes03",
                   "an empty video file and keep their ID and title features (first: bikes04"):
      self.assertIn(needle, text)
    raw = list(ds.catalog.extra["raw_id"])
    self.assertIn("unknown_item", raw)
    self.assertEqual(ds.catalog.title[raw.index("unknown_item")], "")
    self.assertEqual(ds.catalog.paths[raw.index("bikes03")], "")
    self.assertEqual(ds.catalog.paths[raw.index("bikes04")], "")
    self.assertEqual(sum(len(ds.split(s)) for s in ds.splits), 10 * 7 + 1)

  def test_a_header_without_the_columns_is_one_line(self):
    root = self._copy()
    with open(os.path.join(root, "interactions.csv"), "w") as f:
      f.write("uid,item,ts\nu0,bikes00,1\n")
    with self.assertRaisesRegex(datasets.DataError, "interactions.csv: columns "
                                r"\['uid', 'item', 'ts'\] lack user, timestamp; expected a "
                                "header with user,item,timestamp"):
      _prepare("video_folder", root)


if __name__ == "__main__":
  absltest.main()
