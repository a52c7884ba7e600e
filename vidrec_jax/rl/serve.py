"""Serving a trained RL policy (`--mode=recommend` / `--mode=export` on the RL experiment's
workdir, `--policy=NAME --rl_seed=S`): the policy as the ranker of the whole catalog, as the
simulator serves it.

The policy's logits over the corpus are its user state (the history tower over the user's watch
history) dotted with every video's vector, plus the video's logit bias. Served, a video's
retrieval and ranking vector is [its vector, its bias] and the user query is [the state, 1],
so retrieval (exact or an index) and ranking both score exactly the policy's logits, and the
list is the policy's top K (its `top_k` serving; the history's videos left out with
`recommend.exclude_watched`, as the simulator leaves out the session's clicked ones). A known
user is one of the simulator's users, their history the one they ended the seed's logged
sessions with (WORKDIR/seed_S/logs_train.npz); a request's history covers any other user.
Thumbnails are rendered from the world (the simulator never writes its videos).
"""

from __future__ import annotations

import dataclasses
import io
import os

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import render
from vidrec_jax.data import world as world_lib
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.models import sequential
from vidrec_jax.rl import logs as logs_lib
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.experiment import catalog_arrays
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.policies import Policy
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.serving import servable as servable_lib
from vidrec_jax.serving.two_stage import Histories
from vidrec_jax.serving.two_stage import Items
from vidrec_jax.train import checkpointing
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train.state import Setup


@dataclasses.dataclass
class PolicyRun:
  """One trained policy of the experiment, restored: what serving it needs."""

  spec: RunSpec
  world: world_lib.World
  setup: Setup
  params: dict
  step: int
  catalog: dict[str, np.ndarray]
  histories: np.ndarray  # (U, L) each simulator user's history after the logged sessions
  popularity: np.ndarray  # (N,) clicks of each video in the seed's training logs
  policy: str
  seed: int


def restore(spec: RunSpec, workdir: str, which: str, policy: str, seed: int | None
            ) -> PolicyRun:
  """The `which` ('latest' or 'best') checkpoint of `policy` trained on seed `seed` (None: the
  first of rl.seeds) in the RL experiment's `workdir`; a ConfigError names a policy or seed the
  experiment does not have, a FileNotFoundError a run that has not happened."""
  r = spec.rl
  if not policy:
    raise ConfigError(f"serving an RL experiment needs --policy=NAME, one of rl.policies: "
                      f"{', '.join(r.policies)}")
  if policy not in r.policies:
    raise ConfigError(f"--policy={policy} is not one of rl.policies: {', '.join(r.policies)}")
  seed = r.seeds[0] if seed is None else seed
  if seed not in r.seeds:
    raise ConfigError(f"--rl_seed={seed} is not one of rl.seeds: "
                      f"{', '.join(map(str, r.seeds))}")
  world = world_lib.World(synthetic.world_args(spec.data.dataset))
  sim = sim_lib.Simulator(world, sim_lib.SimArgs.from_config(r.simulator))
  directory = os.path.join(workdir, f"seed_{seed}")
  logs_path = os.path.join(directory, "logs_train.npz")
  if not os.path.exists(logs_path):
    raise FileNotFoundError(f"no logged sessions at {logs_path}: run the experiment "
                            "(--mode=rl) first")
  logs = logs_lib.Logs.load(logs_path)
  setup = Setup(spec, 1, sim.num_videos, mesh_lib.make_mesh(spec.mesh))
  trained = type(POLICIES.get(policy)).trainer is not Policy.trainer  # it overrides `trainer`
  restored = checkpointing.restore_for_serving(
      os.path.join(directory, policy, "checkpoints"), spec.train, setup.abstract_state, which,
      f"of policy {policy!r}" + ("" if trained else
                                 " (an untrained policy has no model to serve)"))
  popularity = np.bincount(logs.video[logs.clicked], minlength=sim.num_videos)
  return PolicyRun(spec=spec, world=world, setup=setup, params=restored.state.params,
                   step=int(restored.step), catalog=catalog_arrays(sim, logs),
                   histories=np.asarray(logs.final_histories, np.int64),
                   popularity=popularity.astype(np.int64), policy=policy,
                   seed=seed)


def servable(p: PolicyRun) -> servable_lib.Servable:
  """The policy's catalog vectors ([vector, logit bias]) and its exported user tower and ranker
  (the policy's logits of the candidates)."""
  setup = p.setup
  host = jax.device_get(p.params)
  model = setup.model(host)
  vecs = np.asarray(jax.jit(model.all_items)(p.catalog), np.float32)
  bias = (np.asarray(jax.jit(lambda rows: model.item_bias(rows)[:, 0])(
      p.catalog[sequential.ROW]), np.float32) if model.item_bias is not None
          else np.zeros(len(vecs), np.float32))
  lifted = np.concatenate([vecs, bias[:, None]], axis=1)
  videos = p.world.videos
  n = len(videos)
  items = Items(retrieval=lifted, ranking=lifted, video_ids=np.arange(n, dtype=np.int64),
                titles=np.array([v.title for v in videos]),
                content_types=np.array([world_lib.CONTENT_TYPES[v.content_type]
                                        for v in videos]),
                cold=np.array([v.cold for v in videos], bool))
  max_len = p.spec.data.history.max_len
  histories = Histories.from_rows([h[h >= 0][-max_len:] for h in p.histories], vecs,
                                  p.popularity, max_len)
  f32 = jnp.float32
  d = lifted.shape[1]
  candidates = min(p.spec.recommend.candidates, n)

  def user_tower(v, mask):
    s = setup.model(host).states_from_vectors(v, mask)
    q = jnp.concatenate([s, jnp.ones(s.shape[:-1] + (1,), s.dtype)], axis=-1)
    return {"user": q, "retrieval": q}

  def ranker(u, cands):
    return {"score": cands @ u}

  return servable_lib.Servable(
      items=items,
      user_tower=servable_lib.export_fn(user_tower, jax.ShapeDtypeStruct((1, max_len, d - 1), f32),
                                        jax.ShapeDtypeStruct((1, max_len), f32)),
      ranker=servable_lib.export_fn(ranker, jax.ShapeDtypeStruct((d,), f32),
                                    jax.ShapeDtypeStruct((candidates, d), f32)),
      users={str(u): u for u in range(len(p.histories))}, oov_row=len(p.histories),
      candidates=candidates, step=p.step, mesh=setup.mesh, rules=setup.rules, heads=("score",),
      exclude_watched=bool(p.spec.recommend.exclude_watched), histories=histories,
      user_input="history")


def thumbnails(world: world_lib.World, video_ids: np.ndarray, size: int):
  """One JPEG (size x size) per video: the middle frame rendered from the world."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  (pillow: matplotlib's dependency)
  c = world.config
  for v in video_ids:
    video = world.videos[int(v)]
    frames = render.render(video, c.resolution, c.noise, c.seed)
    frame = frames[len(frames) // 2]
    buf = io.BytesIO()
    Image.fromarray(frame).resize((size, size)).save(buf, format="JPEG", quality=85)
    yield buf.getvalue()
