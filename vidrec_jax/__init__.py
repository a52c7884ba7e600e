"""vidrec_jax: a JAX/Flax trainer for content-based video recommendation."""

__version__ = "0.1.0"
