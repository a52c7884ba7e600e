"""Model stage: Flax NNX modules assembled from explicit registries (encoders, poolings, user
towers, heads, retrieval tasks, backbones, text models, pretrained parts)."""
