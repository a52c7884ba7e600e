"""The fields every config builds on (`base_config`: the synthetic world, the conv frame encoder
on pixels, the two-tower click and watch-time model, its trainer, mesh, sweep, evaluators and
serving), the typed arguments they share (`ARGUMENTS`, `apply_arguments`), and the item towers a
config picks (`use_two_stream`, `use_pretrained_backbone`, `use_smoke`).

configs/demo.py, multitask.py, pretrained.py, movielens.py, video_folder.py and rl.py all start
here; none of them imports another's `get_config` to get these fields, so the demo's default can
be any of them without an import cycle. Every field the library reads is set here: library code
has no hidden defaults.
"""

import ml_collections

# Typed config arguments (`key=value` after the colon) of the demo's configs; each value gives the
# argument's type (configs/common.py) and documents its usual value. Only the keys a command
# gives are applied (`apply_arguments`), so a config's own defaults stand otherwise.
ARGUMENTS = dict(frames=6, steps=2000, seed=0, world_seed=17, lr=3e-3, batch=64, workers=2)


def world_config() -> ml_collections.ConfigDict:
  """data.dataset: the registered `synthetic` dataset (the generated world) and its arguments."""
  return ml_collections.ConfigDict(dict(
      name="synthetic",
      seed=17, num_users=300, num_videos=500, num_topics=12, num_palettes=6, topic_purity=0.6,
      cold_fraction=0.25, format_weights=dict(mp4=0.8, avi=0.1, flv=0.1),
      min_frames=8, max_frames=48, resolution=64, fps=8, noise=0.02,
      num_personas=8, individual_taste_std=0.3, appearance_weight=1.6, motion_weight=1.6,
      order_weight=0.0,  # > 0: clips change colour halfway; users care which colour is first
      user_bias_std=0.15, video_bias_std=0.15,
      base_logit=-0.5, horizon_seconds=30 * 86400.0, train_until=0.7, valid_until=0.85,
      slates_per_user=40, slate_size=8, cold_share_after_publish=0.4,
      position_bias_power=0.5, label_noise=0.02,
      # > 0: the logged slates come from a segment-level feed (each slot drawn with probability
      # proportional to exp(exposure_taste x the user's persona's affinity)); 0: uniform.
      exposure_taste=0.0,
      # --mode=generate writes the world as the run's dataset ('tfds') or as a MicroLens
      # release folder under WORKDIR/data/microlens ('microlens'), for the microlens dataset.
      layout="tfds"))


def backbone_config() -> ml_collections.ConfigDict:
  """The pretrained backbone (model.backbone): used when model.frame_encoder.name='backbone'."""
  return ml_collections.ConfigDict(dict(
      name="efficientnet_lite0", checkpoint="", outputs=("stage3", "stage5"), grid=2,
      train_mode="frozen", top_blocks=2, from_cache=True, extract_batch_size=64,
      whiten=0, whiten_flow=False))


def base_config() -> ml_collections.ConfigDict:
  """Every field, with the conv frame encoder on pixels."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mode = "train"
  # Modules imported before the config is checked: parts from outside the library (a dataset,
  # head, encoder, trainer, ... in the user's own package) register themselves on import.
  c.imports = ()

  c.data = ml_collections.ConfigDict(dict(
      dataset=world_config(),
      data_dir="",  # '' = WORKDIR/data; generated there on first use
      num_frames=6, frame_size=32, normalization="unit",
      batch_size=64, impressions_per_clip=4, eval_batch_size=256, num_workers=2, read_threads=1,
      prefetch_batches=2, shuffle_seed=0, cache_videos=2000,
      feature_cache="",  # '' = WORKDIR/features (backbone features, --mode=extract)
      cache_frames=64,  # frames kept per video: decoding and the feature cache
      frame_selection="spaced",  # which: 'spaced' over the video, or 'middle' (consecutive)
      text_cache="",  # '' = WORKDIR/text_features (title embeddings of a frozen text tower)
      flow_cache="",  # '' = WORKDIR/flow (optical flow, model.frame_encoder.flow_source='cache')
      # Watch histories of sequential models: windows of max_len items, `stride` new targets each.
      history=dict(max_len=50, stride=25)))

  c.model = ml_collections.ConfigDict(dict(
      name="two_tower", embed_dim=32, hidden=64, use_video_id=True, id_dropout=0.5,
      user_tower=dict(name="id"),
      frame_encoder=dict(name="conv", channels=(16, 32, 48), features=64, motion=True),
      backbone=backbone_config(),
      pooling="mean_max", heads=("click", "watch_time"), position_bias=True, max_positions=16,
      # The pooling's own arguments (models/poolings.py), e.g. dict(levels=(1, 3)) for `pyramid`.
      pooling_args=dict(),
      # Registered per-video features the item tower adds (models/item_features.py); () = none.
      item_features=(),
      # 'fixed': train.loss_weights; 'uncertainty': also learned per-loss uncertainty weights.
      loss_weighting="fixed",
      # The multi-task trunk under the heads (models/experts.py): shared_bottom; mmoe
      # (num_experts); ple (shared_experts, task_experts, levels).
      trunk=dict(name="shared_bottom"),
      # Content types with an embedding in the item tower (e.g. ("movie", "series", "news"), the
      # synthetic world's); () = none. Metrics are reported per content type either way.
      content_types=(),
      # Heads trained on clicked impressions only and predicted as P(click) times their
      # conditional prediction (ESMM-style; watch_time, like); () = every head unconditional.
      given_click=(),
      # The item tower reads each video's length (datasets that know it: synthetic).
      item_duration=False,
      # Every head also reads one shared user-item affinity (u.i / sqrt(D)), each by its own
      # learned multiple.
      shared_affinity=False,
      dtype="float32", param_dtype="float32",
      # ID tables get rows up to a multiple of this, so any mesh axis dividing it splits them.
      vocab_pad_multiple=128,
      # Titles: the pretrained all-MiniLM-L6-v2 sentence encoder, frozen (embeddings cached once
      # in WORKDIR/text_features), `top_layers` or `full` (trained, from tokens). Used by the
      # item tower with `item_tower`, and by the text_match task.
      text=dict(name="all-MiniLM-L6-v2", item_tower=False, train_mode="frozen", top_layers=2,
                max_length=32),
      # Retrieval tasks on the shared content tower: text_match, visual_query.
      tasks=(), retrieval_dim=32))

  c.train = ml_collections.ConfigDict(dict(
      trainer="supervised",
      trainer_args=dict(),  # the trainer's own settings (typed arguments of its __init__)
      steps=2000, learning_rate=3e-3, warmup_steps=100, end_learning_rate_factor=0.05,
      weight_decay=1e-4, grad_clip=1.0,
      loss_weights=dict(click=1.0, watch_time=0.1, watch_time_logistic=0.1, watch_time_log=0.1,
                        like=0.5, text_match=0.1, visual_query=0.1, user_item=0.5),
      backbone_learning_rate_factor=0.1, text_learning_rate_factor=0.1,
      log_every=50, eval_every=0, checkpoint_every=400, keep_checkpoints=2,
      # Stop after this many evaluations without a better best_metric (0 = off); the final
      # evaluation then reports the best checkpoint.
      early_stopping=0,
      softmax="full",  # next-item objective: full (over the catalog) or sampled (in-batch, logQ)
      # The best checkpoint by this valid metric is kept in WORKDIR/checkpoints_best ('' = off);
      # evaluated at every eval_every and at the end.
      best_metric="valid/all/auc", best_mode="max"))

  c.mesh = ml_collections.ConfigDict(dict(
      shape=dict(data=-1, fsdp=1, model=1),
      rules=(("batch", ("data", "fsdp")), ("vocab", "model"), ("embed", "fsdp"),
             ("mlp", "model"), ("heads", "model"), ("conv_out", None), ("conv_in", None),
             ("time", None), ("catalog", ("data", "fsdp", "model")))))

  # Hyperparameter search (python -m vidrec_jax.sweep; vidrec_jax/tuning/): the searched fields
  # (`space`), what every trial sets (`trial`: runs evaluated often enough to prune), the
  # metric chosen on (valid) and reported (test), sampler, pruner and where the study lives.
  c.sweep = ml_collections.ConfigDict(dict(
      metric="valid/cold/auc", mode="max", trials=20, sampler="tpe", pruner="median", seed=0,
      startup_trials=5, study_name="sweep",
      storage="",  # '' = SQLite in WORKDIR; 'journal'; a .journal path; an RDB URL
      heartbeat_seconds=60,  # RDB storages: a trial silent for 3x this is re-run elsewhere
      # Full-length trials, pruned at their evaluations: 600-step trials picked configs that
      # learn fast and end lower (BENCHMARKS.md, issue 15).
      trial=("train.eval_every=400",),
      space=("train.learning_rate=loguniform(1e-3, 1e-2)",
             "train.weight_decay=loguniform(1e-6, 1e-2)",
             "model.id_dropout=uniform(0.0, 0.8)",
             "model.embed_dim=choice(16, 32, 64)",
             "model.hidden=choice(32, 64, 128)",
             # pyramid: the default since the two-stream tower (issue 12), so a sweep can keep it
             "model.pooling=choice(pyramid, mean_max, masked_mean, masked_max)")))

  # Evaluators (vidrec_jax/eval/evaluators): name -> registered type and its arguments.
  c.evals = ml_collections.ConfigDict(dict(
      ranking=dict(type="ranking", splits=("valid", "test"), ndcg_k=10),
      # query_seed seeds the random frames of each visual-query evaluation view.
      retrieval=dict(type="retrieval", query_seed=1)))

  # --mode=recommend / export (vidrec_jax/recommend.py): k videos per list; the `candidates`
  # nearest videos by retrieval vector go to the ranker; the fusion formula over the heads'
  # predictions (click, like: probabilities; watch_time: seconds) orders them, e.g.
  # "click * (1 + 0.1 * watch_time)" (vidrec_jax/serving/fusion.py says what is allowed); the
  # sequential model has one output, "score". exclude_watched: a model whose users are encoded
  # from watch histories (sasrec, sequential) never lists a video of the user's history.
  # retrieval: stage 1 of the bundle --mode=export writes: "exact", an approximate index
  # ("faiss", "faiss_hnsw", "scann": vidrec_jax/serving/retrieval.py, `pip install -e
  # '.[ann]'`), or "auto": exact up to 50,000 items, scann above (from benchmarks/serving.py's
  # measurements); an index is tuned to
  # mean recall@candidates >= retrieval_target against exact search on half of
  # retrieval_queries users and measured on the other half (the manifest records both).
  # thumbnails: the side in pixels of the frame stored per video in the bundle (the service's
  # page shows it); 0 stores none.
  c.recommend = ml_collections.ConfigDict(dict(
      k=10, candidates=100, fusion="click", exclude_watched=True, retrieval="auto",
      retrieval_target=0.95, retrieval_queries=1000, thumbnails=96))
  return c


def apply_arguments(c: ml_collections.ConfigDict, args: dict) -> None:
  """Typed config arguments onto the config fields they name."""
  fields = dict(frames="data.num_frames", steps="train.steps", world_seed="data.dataset.seed",
                lr="train.learning_rate", batch="data.batch_size", workers="data.num_workers")
  for key, value in args.items():
    if key == "seed":
      c.seed = c.data.shuffle_seed = value
      continue
    *path, last = fields[key].split(".")
    section = c
    for p in path:
      section = section[p]
    section[last] = value


def two_stream_encoder(flow: bool, attend: bool) -> ml_collections.ConfigDict:
  """model.frame_encoder: the `two_stream` encoder (models/video_encoder.py) from 32x32 pixels,
  with or without its flow stream (flow estimated in the step) and causal temporal attention."""
  return ml_collections.ConfigDict(dict(
      name="two_stream", channels=(16, 32, 48), features=64, motion=False, flow=flow,
      flow_channels=(16, 32, 48), flow_init="scratch", flow_source="device",
      spatial_attention=False, temporal_attention="causal" if attend else "none",
      attention_layers=1, attention_heads=4, fusion="concat"))


def use_two_stream(c: ml_collections.ConfigDict, *, flow: bool, attend: bool,
                   pyramid: bool) -> None:
  """Item tower on the two_stream encoder from pixels (data.frame_size 32, 'unit' pixels), with
  temporal pyramid + attention pooling or masked mean pooling."""
  c.model.frame_encoder = two_stream_encoder(flow, attend)
  c.model.pooling = "pyramid" if pyramid else "masked_mean"


def use_pretrained_backbone(c: ml_collections.ConfigDict, smoke: bool = False) -> None:
  """Item tower on a frozen ImageNet EfficientNet-Lite0: stage3 and stage5 outputs, each pooled
  to a 2x2 grid, with the next sampled frame's feature difference; trained from the feature
  cache (`--mode=extract` writes it; training extracts it first when missing)."""
  c.data.update(frame_size=64, normalization="lite")
  c.model.frame_encoder = ml_collections.ConfigDict(dict(
      name="backbone", features=64, hidden=128, temporal_difference="segments",
      # A trained optical-flow stream beside the frozen backbone (flow cache, WORKDIR/flow).
      # flow_stream: 'conv' (flow_channels; the fields first averaged to flow_size cells a
      # side, 0: full size) or 'histogram' (fixed motion statistics of each frame's flow).
      flow=False, flow_stream="conv", flow_channels=(16, 32, 48), flow_source="cache",
      flow_size=16,
      # input_dropout: training-time dropout of the frame head's inputs; frame_average: every
      # frame's inputs replaced by the clip's mean (appearance that stays put; motion from flow).
      input_dropout=0.0, frame_average=False))
  c.model.backbone = backbone_config()
  if smoke:
    c.data.update(frame_size=32, batch_size=8, eval_batch_size=16)
    c.model.frame_encoder.update(features=10, hidden=12)
    c.model.backbone.update(outputs=("stage2", "stage3"), grid=1, extract_batch_size=8)


def use_smoke(c: ml_collections.ConfigDict) -> None:
  """A tiny world and model (seconds a run): 24 users, 40 videos, the conv encoder shrunk."""
  c.data.dataset.update(num_users=24, num_videos=40, num_topics=4, min_frames=5,
                        max_frames=14, resolution=32, slates_per_user=6, slate_size=5)
  c.data.update(num_frames=6, frame_size=16, batch_size=16, impressions_per_clip=3,
                eval_batch_size=32, num_workers=0)
  c.model.update(embed_dim=8, hidden=12)
  c.model.frame_encoder.update(channels=(4, 6), features=10)
  c.train.update(steps=6, warmup_steps=2, log_every=2, checkpoint_every=3)
  c.sweep.update(trials=3, startup_trials=1,
                 trial=("train.steps=6", "train.eval_every=2", "train.warmup_steps=2"))
