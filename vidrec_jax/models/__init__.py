"""Model stage: Flax NNX modules assembled from an explicit registry."""

import flax

# Parameters carry logical axis names as metadata only; the trainer maps them to mesh axes and
# creates the parameters inside a jit with out_shardings, so eager per-variable sharding is off.
flax.config.update("flax_always_shard_variable", False)
