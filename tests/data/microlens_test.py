"""The `microlens` dataset reads a release folder as downloaded (tests/helpers.py
`make_microlens_folder`: real clips in the release's layout with its rough edges): pairs by
position with a header detected, or the .tsv sequences; titles split at the first comma with
invalid UTF-8 replaced; a truncated video falls back to its cover, a cover-only item is clipped
from its cover, a zero-byte video without a cover keeps ID and title; bad rows are named in the
log and lose nothing else; and a model trains on it end to end."""

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import run_spec
from vidrec_jax import validate
from vidrec_jax.data import datasets
from vidrec_jax.data import features
from vidrec_jax.data import microlens_layout
from vidrec_jax.data import world as world_lib
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import DataError
from vidrec_jax.data.datasets import microlens
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.models import sequential
from vidrec_jax.train import catalog as catalog_lib
from vidrec_jax.train import context
from vidrec_jax.train import extract as extract_lib


def _read(path: str, min_interactions: int = 0, keep_last: int = 0):
  return microlens.MicroLens().read({"name": "microlens", "path": path,
                                     "min_interactions": min_interactions,
                                     "keep_last": keep_last})


class MicroLensReadTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="vidrec_microlens_")
    cls.csv = os.path.join(cls.root, "csv")
    cls.info = helpers.make_microlens_folder(cls.csv)

  def test_pairs_by_position_titles_at_the_first_comma_and_bad_rows_named(self):
    with self.assertLogs(level="WARNING") as logs:
      t = _read(self.csv)
    self.assertEqual(list(t.item_raw), self.info["items"])
    self.assertEqual(len(t.user), len(self.info["rows"]))  # header, duplicate, malformed gone
    self.assertLen(t.user_raw, 12)
    text = "\n".join(logs.output)
    self.assertIn("3 rows with a missing field or a timestamp that is not an integer", text)
    self.assertIn("'999,5'", text)
    self.assertIn("1 duplicate rows", text)
    titles = dict(zip(t.item_raw, t.title))
    self.assertEqual(titles["4"], "Clip 4, with a comma, or two")
    self.assertIn("\ufffd", titles["2"])
    self.assertTrue(titles["2"].endswith("bytes, still a title"))
    self.assertIn("titles with invalid UTF-8", text)
    self.assertIn("line 2 (item 2)", text)

  def test_broken_videos_fall_back_to_the_cover_then_to_id_and_title(self):
    with self.assertLogs(level="WARNING") as logs:
      t = _read(self.csv)
    paths = dict(zip(t.item_raw, t.path))
    self.assertEqual(os.path.basename(paths[self.info["truncated"]]), "3.jpg")
    self.assertEqual(os.path.basename(paths[self.info["cover_only"]]), "7.jpg")
    self.assertEqual(paths[self.info["zero_byte"]], "")
    self.assertEqual(os.path.basename(paths["1"]), "1.mp4")
    text = "\n".join(logs.output)
    self.assertIn("2 items clipped from their cover image instead of their video", text)
    self.assertIn("3 (undecodable video)", text)
    self.assertIn("7 (no video)", text)
    self.assertIn("1 items with neither a decodable video nor a cover", text)
    self.assertIn("5 (undecodable video)", text)
    # A cover is a one-frame clip through the same decoder as videos.
    self.assertEqual(video_io.decode_video(paths["7"], 32, 6).shape, (1, 32, 32, 3))

  def test_the_tsv_sequences_give_the_same_log_in_the_same_order(self):
    tsv = os.path.join(self.root, "tsv")
    helpers.make_microlens_folder(tsv, pairs="tsv")
    with self.assertLogs(level="WARNING") as logs:
      a, b = _read(self.csv), _read(tsv)
    self.assertIn("2 rows with a missing field", "\n".join(logs.output))
    self.assertEqual(list(a.item_raw), list(b.item_raw))
    self.assertEqual(list(a.user_raw), list(b.user_raw))
    # The same interactions and the same leave-one-out split (the .tsv's order is its time).
    self.assertEqual(sorted(zip(a.user, a.item, a.split)), sorted(zip(b.user, b.item, b.split)))

  def test_the_microlens_filtering_keeps_each_users_last_interactions(self):
    # The fixture's 12 users have 6 interactions each: the last 4 of each stay, in the same
    # leave-one-out split at the end of each user's sequence.
    full, last4 = _read(self.csv), _read(self.csv, min_interactions=5, keep_last=4)
    self.assertEqual(len(last4.user), 12 * 4)
    self.assertEqual(sorted(last4.split.tolist()).count(2), 12)
    self.assertEqual(sorted(last4.split.tolist()).count(1), 12)
    test = lambda t: sorted(zip(t.user_raw[t.user[t.split == 2]], t.item[t.split == 2]))  # noqa: E731
    self.assertEqual(test(full), test(last4))
    with self.assertRaisesRegex(DataError, "no interaction is left"):
      _read(self.csv, min_interactions=7)

  def test_a_folder_without_one_release_is_one_error(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(DataError, "no MicroLens-<size>_pairs"):
      _read(empty)
    two = self.create_tempdir().full_path
    for name in ("MicroLens-100k_pairs.csv", "MicroLens-50k_pairs.csv"):
      with open(os.path.join(two, name), "w") as f:
        f.write("1,2,3\n")
    with self.assertRaisesRegex(DataError, r"files of 2 releases \(100k, 50k\)"):
      _read(two)
    with self.assertRaisesRegex(DataError, "does not exist"):
      _read(os.path.join(two, "missing"))


class MicroLensLayoutTest(absltest.TestCase):

  def test_generate_writes_the_world_as_a_release_that_microlens_reads(self):
    c = helpers.load_config("smoke")
    c.mode, c.data.dataset.layout = "generate", "microlens"
    workdir = self.create_tempdir().full_path
    experiment.generate(c, workdir)
    folder = os.path.join(workdir, "data", "microlens")
    world = world_lib.World(synthetic.world_args(c.data.dataset))
    n = c.data.dataset.num_users
    self.assertTrue(os.path.exists(os.path.join(folder, f"MicroLens-{n}_pairs.csv")))
    covers = os.listdir(os.path.join(folder, f"MicroLens-{n}_covers"))
    self.assertLen(covers, len(world.videos))
    t = _read(folder)
    clicks = world.impressions["click"] > 0
    pairs = set(zip(world.impressions["user_id"][clicks].tolist(),
                    world.impressions["video_id"][clicks].tolist()))
    self.assertLess(len(pairs), int(clicks.sum()))  # this world has repeated clicks ...
    self.assertEqual(len(t.user), len(pairs))  # ... and the release one row per user and video
    self.assertLen(set(zip(t.user.tolist(), t.item.tolist())), len(t.user))
    self.assertEqual(sorted(set(t.user_raw)),
                     sorted({str(u + 1) for u in world.impressions["user_id"][clicks]}))
    titles = dict(zip(t.item_raw, t.title))
    for v in world.videos:
      if str(v.video_id + 1) in titles:
        self.assertEqual(titles[str(v.video_id + 1)], v.title)
    self.assertTrue(all(p.endswith(".mp4") for p in t.path))  # real videos, no cover fallback
    first = world.impressions["user_id"][clicks][0] + 1, world.impressions["video_id"][clicks][0] + 1
    with open(os.path.join(folder, f"MicroLens-{n}_pairs.csv")) as f:
      self.assertEqual(f.readline().strip(), "user,item,timestamp")
      self.assertEqual(tuple(int(x) for x in f.readline().split(",")[:2]), tuple(first))
    # Built once: the same settings reuse it, others are refused in one line.
    stamp = os.path.getmtime(os.path.join(folder, "world_config.json"))
    experiment.generate(c, workdir)
    self.assertEqual(os.path.getmtime(os.path.join(folder, "world_config.json")), stamp)
    c.data.dataset.num_users += 1
    with self.assertRaisesRegex(DataError, "data.dataset.num_users: 24 -> 25"):
      experiment.generate(c, workdir)

  def test_first_clicks_keeps_each_users_first_click_on_each_video(self):
    user = np.array([0, 0, 1, 0, 1, 0, 2])
    video = np.array([5, 5, 5, 7, 5, 5, 7])
    click = np.array([0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(microlens_layout.first_clicks(user, video, click), [1, 2, 3])

  def test_the_layout_is_for_generate_only(self):
    c = helpers.load_config("smoke")
    c.data.dataset.layout = "microlens"
    with self.assertRaisesRegex(validate.ConfigError, "data.dataset.layout='microlens'.*"
                                "--mode=generate only") as cm:
      validate.validate(c)
    self.assertNotIn("\n", str(cm.exception))
    c.data.dataset.layout = "lmdb"
    with self.assertRaisesRegex(validate.ConfigError, "allowed: tfds, microlens"):
      validate.validate(c)


class MicroLensTrainTest(absltest.TestCase):

  def test_the_microlens_config_trains_in_its_protocol(self):
    # configs/microlens.py: filtering, in-batch softmax without history negatives, the best
    # checkpoint by the history-masked valid NDCG@10, frozen video features.
    folder = self.create_tempdir().full_path
    made = helpers.make_microlens_folder(folder)
    # Item 1 becomes new in the test period: only the last interaction of four users.
    rows = [r for r in made["rows"] if r[1] != "1"]
    rows += [(u, "1", 1_700_000_000) for u in ("100", "101", "102", "103")]
    with open(os.path.join(folder, "MicroLens-100k_pairs.csv"), "w") as f:
      f.write("".join(f"{u},{i},{t}\n" for u, i, t in rows))
    c = helpers.load_config("smoke,frozen", "microlens.py")
    c.data.dataset.path = folder
    workdir = self.create_tempdir().full_path
    metrics = experiment.train(c, workdir)
    for k in ("test/masked/ndcg@10", "test/ndcg@10", "valid/masked/hr@10"):
      self.assertIn(k, metrics)
    # `new`: the targets whose item has no training interaction (the ID-only model's OOV row).
    ds = datasets.get(c.data.dataset, os.path.join(workdir, "data"))
    seen = set(ds.split("train").columns["video_id"].tolist())
    for split in ("valid", "test"):
      targets = ds.split(split).columns["video_id"].tolist()
      n_new = sum(t not in seen for t in targets)
      self.assertEqual(n_new, 4 if split == "test" else 0)
      self.assertEqual(metrics[f"{split}/new/count"], n_new)
      self.assertEqual(metrics[f"{split}/masked/new/count"], n_new)
      self.assertEqual(metrics[f"{split}/warm/count"] + metrics[f"{split}/cold/count"],
                       len(targets))
    with open(os.path.join(workdir, "config.json")) as f:
      record = json.load(f)
    self.assertEqual(record["train"]["trainer_args"], {"mask_history": True})
    self.assertEqual(record["train"]["best_metric"], "valid/masked/ndcg@10")
    self.assertTrue(os.listdir(os.path.join(workdir, "checkpoints_best")))

  def test_the_tower_variant_reads_whitened_motion_and_titles(self):
    # configs/microlens.py:tower: the frozen features whitened with each frame's flow
    # histograms (the flow cache in its histogram form, not fields), the cached title
    # embeddings, and the ID; the video without a file keeps its ID and title.
    folder = self.create_tempdir().full_path
    helpers.make_microlens_folder(folder)
    helpers.require_text_model()
    c = helpers.load_config("smoke,tower", "microlens.py")
    c.data.dataset.path = folder
    workdir = self.create_tempdir().full_path
    metrics = experiment.train(c, workdir)
    self.assertIn("test/masked/hr@10", metrics)
    with open(os.path.join(workdir, "flow", "meta.json")) as f:
      self.assertEqual(json.load(f)["form"], "histograms")
    run = run_spec.resolve(c)
    self.assertEqual(sequential.content_tables(run.model), {"title": 384, "video": 128})
    ctx = context.make_context(run, workdir, prepare=False)
    catalog = catalog_lib.catalog_arrays(ctx)
    video = catalog["video"]
    self.assertEqual(video.shape, (len(ctx.dataset.catalog), 128))
    has_file = np.abs(video).sum(1) > 0
    self.assertEqual(int((~has_file).sum()), 1)  # the item with a cover only
    # Each row: the mean and max over frames of the whitened features joined by the frame's
    # motion histograms (21 columns), fitted on the training videos.
    white = ctx.whitening
    self.assertTrue(white.flow)
    dim = int(features.read_meta(ctx.workdir.features)["dim"])
    self.assertEqual((white.dim, white.mean.shape[0]), (64, dim + 21))
    vid = int(np.flatnonzero(has_file)[0])
    frames = white(features.load_cache(ctx.workdir.features)[vid],
                   features.load_cache(ctx.workdir.flow)[vid])
    np.testing.assert_allclose(video[vid], np.concatenate([frames.mean(0), frames.max(0)]),
                               rtol=1e-5, atol=1e-5)
    self.assertEqual(catalog["title"].shape, (len(ctx.dataset.catalog), 384))
    self.assertTrue((np.abs(catalog["title"]).sum(1) > 0).all())

  def test_middle_extracts_five_consecutive_middle_frames_and_keeps_its_own_cache(self):
    folder = self.create_tempdir().full_path
    helpers.make_microlens_folder(folder)
    c = helpers.load_config("smoke,frozen,middle", "microlens.py")
    c.data.dataset.path = folder
    workdir = self.create_tempdir().full_path
    experiment.extract(c, workdir)
    meta = features.read_meta(os.path.join(workdir, "features"))
    self.assertEqual((meta["selection"], meta["max_frames"]), ("middle", 5))
    ds = datasets.get(c.data.dataset, os.path.join(workdir, "data"))
    table = features.load_cache(os.path.join(workdir, "features"))
    vid = next(v for v in table if len(table[v]) == 5)
    path = ds.catalog.path(vid)
    _, index = video_io.read_frames(path, max_frames=5, selection="middle")
    n = len(video_io.read_frames(path)[1])
    self.assertGreater(n, 5)
    np.testing.assert_array_equal(index, np.arange(5) + (n - 5) // 2)  # consecutive, centred
    # Our spread frames need their own cache: a run of `frozen` refuses this one in one line.
    spread = helpers.load_config("smoke,frozen", "microlens.py")
    spread.data.dataset.path = folder
    spread.data.cache_frames = 5
    with self.assertRaisesRegex(features.CacheError, "selection='middle', the config asks for "
                                "'spaced'"):
      features.check_meta(os.path.join(workdir, "features"),
                          extract_lib.expected_meta(run_spec.resolve(spread)))

  def test_sasrec_with_video_features_trains_and_evaluates_on_the_release(self):
    folder = self.create_tempdir().full_path
    helpers.make_microlens_folder(folder, size="50k")
    helpers.require_text_model()
    c = helpers.load_config("smoke", "video_folder.py")
    c.data.dataset.name = "microlens"
    c.data.dataset.path = folder
    workdir = self.create_tempdir().full_path
    metrics = experiment.train(c, workdir)
    self.assertIn("test/ndcg@10", metrics)
    self.assertIn("test/cold/hr@10", metrics)
    # Both protocols in one evaluation: masking the history only removes competitors.
    for k in ("hr@10", "ndcg@10", "mrr@10", "warm/hr@10"):
      self.assertGreaterEqual(metrics[f"test/masked/{k}"], metrics[f"test/{k}"], k)
    self.assertIn("valid/masked/cold/ndcg@10", metrics)
    with open(os.path.join(workdir, "data", "dataset_stamp.json")) as f:
      self.assertEqual(json.load(f)["args"]["name"], "microlens")


if __name__ == "__main__":
  absltest.main()
