"""A synthetic video world with a known truth.

Every video has latent factors that show in its pixels: appearance (palette, shape, background
texture) and motion (direction, speed, rotation).  Users belong to taste segments and have
latent tastes over those factors; some tastes are visible only in appearance (palette, shape)
and some only in motion (direction, speed), so a frame-by-frame encoder cannot recover all of
the signal.  With `order_weight` > 0 every clip changes colour halfway and users also care which
colour comes first (an antisymmetric taste: the same two colours in the other order score the
opposite), a taste no orderless pooling of the frames can see.

Impressions are logged in slates with position bias and label noise. The slates show videos
drawn uniformly from the catalog, or (`exposure_taste` > 0) from a segment-level feed that
favours what the user's persona likes, as logged feeds do; the user response
model (vidrec_jax/data/response.py, shared with the RL simulator) turns them into clicks, watch
time and likes.  `World.oracle_logit` gives the true (position-free) click logit for any (user,
video) pair.

Everything is a deterministic function of the world's arguments (`WorldConfig`, the seed among
them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from vidrec_jax.data import exposure
from vidrec_jax.data import response
from vidrec_jax.data.world_config import WorldConfig

PALETTE = np.array(
    [[230, 40, 40], [40, 200, 60], [50, 80, 240], [240, 220, 40], [220, 60, 220], [40, 220, 230],
     [255, 140, 0], [250, 250, 250]], dtype=np.float32)
SHAPES = ("circle", "square", "triangle")
TEXTURES = ("flat", "stripes", "checker")
DIRECTIONS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)  # (dx, dy)
SPEEDS = (1.5, 4.0)  # pixels per frame at 64 px, scaled with resolution
ROTATIONS = (0.0, 0.25, -0.25)  # radians per frame
CONTENT_TYPES = ("movie", "series", "news")
TOPIC_WORDS = (
    "ocean", "forest", "city", "desert", "galaxy", "kitchen", "stadium", "mountain", "river",
    "market", "garden", "harbor", "castle", "studio", "island", "canyon", "festival", "arcade",
    "library", "volcano", "meadow", "subway", "glacier", "circus")
SPLITS = ("train", "valid", "test")
FORMATS = ("mp4", "avi", "flv")


@dataclasses.dataclass(frozen=True)
class Video:
  """Latent description of one video."""

  video_id: int
  topic: int
  palette: int
  shape: int
  texture: int
  direction: int
  speed: int
  rotation: int
  num_frames: int
  content_type: int
  fmt: str
  cold: bool
  publish_time: float  # seconds; cold videos are published when the training period ends
  title: str
  start_xy: tuple[float, float]
  phase: float
  # The palette of the second half of the clip (-1: one palette throughout). Worlds with
  # temporal-order tastes (`order_weight` > 0) switch colour halfway.
  palette2: int = -1

  @property
  def filename(self) -> str:
    return f"video_{self.video_id:05d}.{self.fmt}"


def factor_width(num_palettes: int) -> int:
  """Width of `factor_features`: palettes, shapes, directions, speeds."""
  return num_palettes + len(SHAPES) + len(DIRECTIONS) + len(SPEEDS)


def factor_features(videos: list[Video], num_palettes: int) -> np.ndarray:
  """One-hot feature matrix of the taste-bearing factors, shape (num_videos, F)."""
  blocks = []
  for attr, n in (("palette", num_palettes), ("shape", len(SHAPES)),
                  ("direction", len(DIRECTIONS)), ("speed", len(SPEEDS))):
    idx = np.array([getattr(v, attr) for v in videos])
    blocks.append(np.eye(n, dtype=np.float32)[idx])
  return np.concatenate(blocks, axis=1)


class World:
  """Users, videos, impressions and the oracle, generated from `config` (a WorldConfig, or the
  dataset section it is made from)."""

  def __init__(self, config: WorldConfig | Mapping[str, Any]):
    if not isinstance(config, WorldConfig):
      config = WorldConfig.from_args(config)
    self.config = c = config
    rng = np.random.default_rng(c.seed)
    self.num_palettes = c.num_palettes
    self.videos = self._make_videos(rng)
    self.features = factor_features(self.videos, c.num_palettes)
    self._make_users(rng)
    self._make_order_tastes()
    self.impressions = self._make_impressions(rng)

  # -- videos ----------------------------------------------------------------------------------
  def _make_videos(self, rng: np.random.Generator) -> list[Video]:
    c = self.config
    topic_palette = rng.integers(0, c.num_palettes, c.num_topics)
    topic_direction = rng.integers(0, len(DIRECTIONS), c.num_topics)
    topic_words = [rng.choice(len(TOPIC_WORDS), 3, replace=False) for _ in range(c.num_topics)]
    num_cold = int(round(c.cold_fraction * c.num_videos))
    cold_ids = set(rng.choice(c.num_videos, num_cold, replace=False).tolist())
    fmt_p = np.array([c.format_weights[f] for f in FORMATS], dtype=np.float64)
    fmt_p /= fmt_p.sum()
    videos = []
    for vid in range(c.num_videos):
      topic = int(rng.integers(c.num_topics))
      palette = int(topic_palette[topic] if rng.random() < c.topic_purity
                    else rng.integers(c.num_palettes))
      direction = int(topic_direction[topic] if rng.random() < c.topic_purity
                      else rng.integers(len(DIRECTIONS)))
      content_type = int(rng.integers(len(CONTENT_TYPES)))
      words = [TOPIC_WORDS[w] for w in rng.choice(topic_words[topic], 2, replace=False)]
      title = f"{words[0]} {words[1]} {CONTENT_TYPES[content_type]}"
      videos.append(Video(
          video_id=vid, topic=topic, palette=palette, shape=int(rng.integers(len(SHAPES))),
          texture=int(rng.integers(len(TEXTURES))), direction=direction,
          speed=int(rng.integers(len(SPEEDS))), rotation=int(rng.integers(len(ROTATIONS))),
          num_frames=int(rng.integers(c.min_frames, c.max_frames + 1)),
          content_type=content_type, fmt=str(rng.choice(FORMATS, p=fmt_p)),
          cold=vid in cold_ids, publish_time=self.train_end if vid in cold_ids else 0.0,
          title=title,
          start_xy=(float(rng.uniform(0, c.resolution)), float(rng.uniform(0, c.resolution))),
          phase=float(rng.uniform(0, 2 * np.pi))))
    return videos

  # -- users -----------------------------------------------------------------------------------
  def _make_users(self, rng: np.random.Generator) -> None:
    """Users belong to taste segments (personas) and deviate from them individually.

    Within each factor the taste is centred over the factor's levels, so a user's average
    affinity over the catalogue is ~0: whom a user clicks on is decided by content, not by how
    active the user is (that part is `user_bias`, kept small).
    """
    c = self.config
    blocks = (self.num_palettes, len(SHAPES), len(DIRECTIONS), len(SPEEDS))
    weights = (c.appearance_weight, c.appearance_weight, c.motion_weight, c.motion_weight)
    persona = rng.integers(0, c.num_personas, c.num_users)
    persona_taste = rng.normal(size=(c.num_personas, sum(blocks)))
    taste = persona_taste[persona] + c.individual_taste_std * rng.normal(
        size=(c.num_users, sum(blocks)))
    segment = persona_taste.copy()
    start = 0
    for n, wgt in zip(blocks, weights):
      for t in (taste, segment):
        block = t[:, start:start + n]
        t[:, start:start + n] = (block - block.mean(1, keepdims=True)) * wgt
      start += n
    self.persona_taste = segment.astype(np.float32)  # what a segment-level feed knows
    self.user_persona = persona
    self.user_taste = taste.astype(np.float32)
    self.user_bias = (rng.normal(size=c.num_users) * c.user_bias_std).astype(np.float32)
    self.video_bias = (rng.normal(size=c.num_videos) * c.video_bias_std).astype(np.float32)

  def _make_order_tastes(self) -> None:
    """Temporal-order tastes, from a generator of their own so that worlds without them
    (`order_weight` = 0) draw exactly what they drew before these existed.

    Every video gets a second palette for its second half; a user's order taste is a centred
    vector z over palettes (per persona, plus individual noise) and the affinity gains
    `order_weight * (z[second] - z[first])`: reversing the clip negates it.
    """
    c = self.config
    p = self.num_palettes
    self.order_features = np.zeros((len(self.videos), p), np.float32)
    self.user_order_taste = np.zeros((c.num_users, p), np.float32)
    if c.order_weight <= 0 or p < 2:
      return
    rng = np.random.default_rng([c.seed, 1])
    for i, v in enumerate(self.videos):
      second = (v.palette + int(rng.integers(1, p))) % p  # always a different colour
      self.videos[i] = dataclasses.replace(v, palette2=second)
      self.order_features[i, second] += 1.0
      self.order_features[i, v.palette] -= 1.0
    persona_taste = rng.normal(size=(c.num_personas, p))
    taste = persona_taste[self.user_persona] + c.individual_taste_std * rng.normal(
        size=(c.num_users, p))
    self.user_order_taste = ((taste - taste.mean(1, keepdims=True))
                             * c.order_weight).astype(np.float32)

  def affinity(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """Content affinity of users[i] for videos[i] (no biases)."""
    return (np.einsum("nf,nf->n", self.user_taste[users], self.features[videos])
            + np.einsum("nf,nf->n", self.user_order_taste[users], self.order_features[videos]))

  def oracle_logit(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """True position-free click logit for each (users[i], videos[i]) pair."""
    users, videos = np.asarray(users), np.asarray(videos)
    return (self.config.base_logit + self.user_bias[users] + self.video_bias[videos]
            + self.affinity(users, videos)).astype(np.float32)

  def oracle_prob(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """True click probability of a user examining the video (before position bias and noise)."""
    return (1.0 / (1.0 + np.exp(-self.oracle_logit(users, videos)))).astype(np.float32)

  def durations(self) -> np.ndarray:
    """(num_videos,) float32 length of each video in seconds."""
    return np.array([v.num_frames for v in self.videos], np.float32) / self.config.fps

  @property
  def train_end(self) -> float:
    """The first moment after the training period, in seconds."""
    return self.config.train_until * self.config.horizon_seconds

  # -- impressions -----------------------------------------------------------------------------
  def split_of(self, timestamp: np.ndarray) -> np.ndarray:
    """Split index (0 train, 1 valid, 2 test) of each timestamp, by time."""
    t = np.asarray(timestamp) / self.config.horizon_seconds
    return np.where(t < self.config.train_until, 0, np.where(t < self.config.valid_until, 1, 2))

  def _make_impressions(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = self.config
    warm = np.array([v.video_id for v in self.videos if not v.cold])
    cold = np.array([v.video_id for v in self.videos if v.cold])
    num_slates = c.num_users * c.slates_per_user
    users = np.repeat(np.arange(c.num_users), c.slates_per_user)
    slate_t = rng.uniform(0, c.horizon_seconds, num_slates)
    late = slate_t >= self.train_end
    if c.exposure_taste > 0:
      video = exposure.feed_slates(c, self.persona_taste, self.features,
                                   self.user_persona[users], late, warm, cold).reshape(-1)
    else:
      rows = []
      for s in range(num_slates):
        # Cold videos are published at the end of training time: they can only be shown later.
        if late[s] and len(cold):
          n_cold = rng.binomial(c.slate_size, c.cold_share_after_publish)
          pick = np.concatenate([rng.choice(cold, n_cold, replace=False),
                                 rng.choice(warm, c.slate_size - n_cold, replace=False)])
          rng.shuffle(pick)
        else:
          pick = rng.choice(warm, c.slate_size, replace=False)
        rows.append(pick)
      video = np.stack(rows).reshape(-1)
    user = np.repeat(users, c.slate_size)
    position = np.tile(np.arange(c.slate_size), num_slates)
    timestamp = np.repeat(slate_t, c.slate_size) + position * 0.5
    n = video.size
    logit = self.oracle_logit(user, video)
    p_click = response.click_probability(logit)
    examine = response.examination(position, c.position_bias_power)
    click = rng.random(n) < p_click * examine
    flip = rng.random(n) < c.label_noise
    click = np.where(flip, ~click, click)
    duration = self.durations()[video]
    frac = response.watch_share(self.affinity(user, video),
                                rng.normal(0, response.WATCH_NOISE_STD, n))
    watch = np.where(click, duration * frac, 0.0).astype(np.float32)
    like_p = response.like_probability(self.affinity(user, video))
    like = click & (rng.random(n) < like_p)
    order = np.argsort(timestamp, kind="stable")
    out = dict(user_id=user, video_id=video, timestamp=timestamp, position=position,
               click=click.astype(np.int64), watch_time=watch, like=like.astype(np.int64),
               oracle_prob=p_click.astype(np.float32))
    out = {k: np.asarray(v)[order] for k, v in out.items()}
    out["split"] = self.split_of(out["timestamp"])
    out["cold"] = np.array([self.videos[v].cold for v in out["video_id"]], dtype=np.int64)
    return out

  def split_impressions(self, split: str) -> dict[str, np.ndarray]:
    sel = self.impressions["split"] == SPLITS.index(split)
    return {k: v[sel] for k, v in self.impressions.items()}
