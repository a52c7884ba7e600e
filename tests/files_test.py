"""Atomic writes (vidrec_jax/files.py): a reader sees the old file or the complete new one, and
two writers of one path at once (two hosts of a sweep writing its config.json on a shared
disk) both succeed, the last rename winning, without taking each other's temporary file."""

import os

from absl.testing import absltest

from vidrec_jax import files


class AtomicPathTest(absltest.TestCase):

  def test_two_writers_of_one_path_at_once_both_succeed(self):
    path = os.path.join(self.create_tempdir().full_path, "config.json")
    with files.atomic_path(path) as a, files.atomic_path(path) as b:
      self.assertNotEqual(a, b)
      self.assertTrue(a.endswith(".json") and b.endswith(".json"))  # extension kept last
      for tmp, text in ((a, "first"), (b, "second")):
        with open(tmp, "w") as f:
          f.write(text)
    # b's block closed first (inner), then a's: the last rename is a's.
    with open(path) as f:
      self.assertEqual(f.read(), "first")
    self.assertEqual(os.listdir(os.path.dirname(path)), ["config.json"])

  def test_a_failed_write_leaves_the_old_file_and_no_temporary(self):
    path = os.path.join(self.create_tempdir().full_path, "x.json")
    files.write_json(path, {"v": 1})
    with self.assertRaises(RuntimeError):
      with files.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
          f.write("half")
        raise RuntimeError("killed mid-write")
    self.assertEqual(files.read_json(path), {"v": 1})
    self.assertEqual(os.listdir(os.path.dirname(path)), ["x.json"])


if __name__ == "__main__":
  absltest.main()
