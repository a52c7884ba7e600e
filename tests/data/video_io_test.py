"""Real video files: writing, decoding of mp4/avi/flv of variable length, masks, bad files."""

import os
import tempfile

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from vidrec_jax.data import video_io


def _clip(num_frames: int, size: int = 32) -> np.ndarray:
  t = np.arange(num_frames)[:, None, None, None]
  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  frames[...] = (t * 20 + 30).astype(np.uint8)  # brightness encodes the frame index
  return frames


class VideoIOTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()

  @parameterized.product(fmt=["mp4", "avi", "flv"], num_frames=[5, 11])
  def test_roundtrip_keeps_length_and_content(self, fmt, num_frames):
    path = os.path.join(self.dir, f"clip.{fmt}")
    frames = _clip(num_frames)
    video_io.write_video(path, frames, fps=8)
    decoded = video_io.decode_video(path)
    self.assertEqual(decoded.shape, frames.shape)
    np.testing.assert_allclose(decoded.mean(axis=(1, 2, 3)), frames.mean(axis=(1, 2, 3)), atol=6)
    small = video_io.decode_video(path, size=16)
    self.assertEqual(small.shape, (num_frames, 16, 16, 3))

  @parameterized.parameters("mp4", "flv")  # flv: no frame count in the container
  def test_max_frames_keeps_evenly_spaced_frames_while_streaming(self, fmt):
    path = os.path.join(self.dir, f"long.{fmt}")
    video_io.write_video(path, _clip(11), fps=8)
    frames, index = video_io.read_frames(path, max_frames=4)
    np.testing.assert_array_equal(index, [0, 3, 7, 10])
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), index * 20 + 30, atol=6)
    np.testing.assert_array_equal(video_io.read_frames(path, max_frames=64)[1], np.arange(11))

  @parameterized.parameters("mp4", "flv")
  def test_middle_keeps_consecutive_frames_around_the_middle(self, fmt):
    # MicroLens' frames: `max_frames` consecutive ones centred on the video's middle.
    path = os.path.join(self.dir, f"long.{fmt}")
    video_io.write_video(path, _clip(11), fps=8)
    frames, index = video_io.read_frames(path, max_frames=5, selection="middle")
    np.testing.assert_array_equal(index, [3, 4, 5, 6, 7])
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), index * 20 + 30, atol=6)
    np.testing.assert_array_equal(video_io.read_frames(path, max_frames=4, selection="middle")[1],
                                  [3, 4, 5, 6])
    # A video no longer than max_frames keeps every frame, whichever the selection.
    np.testing.assert_array_equal(
        video_io.read_frames(path, max_frames=11, selection="middle")[1], np.arange(11))
    with self.assertRaisesRegex(ValueError, "frame selection 'centre': allowed spaced, middle"):
      video_io.frame_indices(11, 5, "centre")

  def test_frames_keep_their_aspect_ratio(self):
    # 48 x 16: blue, red and green thirds. Short side 16 and a centre crop keep the red third
    # only; squashing the frame to a square would keep all three colours.
    frame = np.zeros((16, 48, 3), np.uint8)
    frame[:, :16, 2], frame[:, 16:32, 0], frame[:, 32:, 1] = 255, 255, 255
    path = os.path.join(self.dir, "wide.mp4")
    video_io.write_video(path, np.stack([frame] * 3), fps=8)
    out = video_io.decode_video(path, size=8).astype(np.float32)
    self.assertEqual(out.shape, (3, 8, 8, 3))
    red, green, blue = out[..., 0].mean(), out[..., 1].mean(), out[..., 2].mean()
    self.assertGreater(red, 200)
    self.assertLess(max(green, blue), 40)
    tall = np.transpose(frame, (1, 0, 2))  # 16 x 48 the other way up: the same holds
    video_io.write_video(path, np.stack([tall] * 3), fps=8)
    self.assertGreater(video_io.decode_video(path, size=8)[..., 0].mean(), 200)

  def test_tsn_sampling_pads_short_clips_with_mask(self):
    idx, mask = video_io.tsn_indices(3, 5, None)
    np.testing.assert_array_equal(idx, [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0])

  def test_tsn_sampling_one_frame_per_segment(self):
    rng = np.random.default_rng(0)
    for n in (7, 8, 48, 301):
      for r in (None, rng):
        idx, mask = video_io.tsn_indices(n, 7, r)
        self.assertTrue(np.all(mask == 1))
        edges = np.linspace(0, n, 8)
        self.assertTrue(np.all((idx >= np.floor(edges[:-1])) & (idx < np.ceil(edges[1:]))))
        self.assertTrue(np.all(np.diff(idx) > 0))

  def test_bad_files_raise_naming_the_path(self):
    good = os.path.join(self.dir, "good.mp4")
    video_io.write_video(good, _clip(12), fps=8)
    data = open(good, "rb").read()
    cases = {
        "zero.mp4": b"",
        "text.mp4": b"this is not a video at all\n" * 20,
        "truncated.mp4": data[: len(data) // 3],
    }
    for name, content in cases.items():
      path = os.path.join(self.dir, name)
      with open(path, "wb") as f:
        f.write(content)
      with self.assertRaisesRegex(video_io.VideoDecodeError, name):
        video_io.decode_video(path)
    with self.assertRaisesRegex(video_io.VideoDecodeError, "missing.mp4"):
      video_io.decode_video(os.path.join(self.dir, "missing.mp4"))

  def test_unknown_suffix_is_refused(self):
    with self.assertRaisesRegex(ValueError, "allowed"):
      video_io.write_video(os.path.join(self.dir, "x.mkv"), _clip(2), fps=8)


if __name__ == "__main__":
  absltest.main()
