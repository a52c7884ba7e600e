"""Reports of runs and sweeps: an HTML page with PNG plots (`python -m vidrec_jax.report`)."""
