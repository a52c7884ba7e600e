"""Train stage: mesh and shardings, state, pure steps, checkpoints and the loop."""
