"""Full-batch optimisation for the benchmarks' small fits (probes, ceilings)."""

import jax
import optax


def full_batch_fit(loss, params, opt: optax.GradientTransformation, steps: int):
  """`params` after `steps` jitted steps of `opt` on the scalar `loss(params)`."""
  state = opt.init(params)

  @jax.jit
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  for _ in range(steps):
    params, state = step(params, state)
  return params
