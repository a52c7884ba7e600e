"""Multi-task trunks: gates, shapes, hand-computed references, config errors, and forward+grad of
the expert trunks with parameters sharded over 8 fake devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from vidrec_jax.config_checks import ConfigError
from vidrec_jax.models import experts
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import mesh as mesh_lib

B, M, D, H = 3, 5, 7, 6  # odd sizes: shape bugs show
TASKS = ("click", "like", "watch")
CONFIGS = {"shared_bottom": dict(name="shared_bottom"),
           "mmoe": dict(name="mmoe", num_experts=4),
           "ple": dict(name="ple", shared_experts=2, task_experts=1, levels=2)}


def make(cfg: dict, dtype=jnp.float32, tasks=TASKS, seed: int = 0, in_dim: int = D,
         hidden: int = H) -> experts.Trunk:
  """A trunk built from `cfg` whose parameters (biases too, so that they count) are N(0, 0.5²)
  draws from numpy: compiling the real initializers costs seconds per model on CPU, and the
  initialisation has a test of its own."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: experts.build(
      cfg, in_dim, hidden, tasks, dtype=dtype, param_dtype=jnp.float32, rngs=nnx.Rngs(seed))))
  rng = np.random.default_rng(seed)
  state = jax.tree.map(lambda v: jnp.asarray(rng.normal(0, 0.5, v.shape), v.dtype), state)
  return nnx.merge(graphdef, state)


def inputs(shape=(B, M, D), seed: int = 1) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def forward(trunk: experts.Trunk, x: jax.Array, method: str = "__call__"):
  """`trunk.method(x)` as one jitted call (one program compiles faster than many eager ops)."""
  graphdef, state = nnx.split(trunk)
  return jax.jit(lambda s, x: getattr(nnx.merge(graphdef, s), method)(x))(state, x)


def params(module) -> dict:
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def gelu(x):
  return np.asarray(jax.nn.gelu(jnp.asarray(x)))


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def expert_by_hand(p: dict, e: int, x: np.ndarray) -> np.ndarray:
  """Expert `e` of an `Experts` module's parameters, one matrix at a time."""
  l0, l1 = p["layers"][0], p["layers"][1]
  return gelu(gelu(x @ l0["kernel"][e] + l0["bias"][e]) @ l1["kernel"][e] + l1["bias"][e])


def ple_by_hand(p: dict, x: np.ndarray, num_tasks: int, shared: int, task: int) -> list:
  """PLE with loops over levels, tasks and experts: per level (task outputs, task gates, shared
  gate or None)."""
  task_in, shared_in, out = [x] * num_tasks, x, []
  for i in sorted(p["levels"]):
    lv = p["levels"][i]
    s = [expert_by_hand(lv["shared_experts"], j, shared_in) for j in range(shared)]
    own = [[expert_by_hand(lv["task_experts"], t * task + k, task_in[t]) for k in range(task)]
           for t in range(num_tasks)]
    gk, gb = lv["task_gates"]["kernel"], lv["task_gates"]["bias"]
    gates = [softmax(task_in[t] @ gk[t] + gb[t]) for t in range(num_tasks)]
    new_task = [sum(gates[t][..., j, None] * v for j, v in enumerate(own[t] + s))
                for t in range(num_tasks)]
    g_shared = None
    if "shared_gate" in lv:
      g_shared = softmax(shared_in @ lv["shared_gate"]["kernel"] + lv["shared_gate"]["bias"])
      every = [v for vs in own for v in vs] + s
      shared_in = sum(g_shared[..., j, None] * v for j, v in enumerate(every))
    task_in = new_task
    out.append((new_task, gates, g_shared))
  return out


class TrunkTest(parameterized.TestCase):

  @parameterized.named_parameters(*[(n, n) for n in CONFIGS])
  def test_every_task_with_leading_shape(self, name):
    x = inputs()
    out = {}
    for dtype in (jnp.float32, jnp.bfloat16):
      trunk = make(CONFIGS[name], dtype)
      hidden, gates = out[dtype] = forward(trunk, x)
      self.assertEqual(tuple(hidden), TASKS)
      for t in TASKS:
        self.assertEqual(hidden[t].shape, (B, M, H))
        self.assertEqual(hidden[t].dtype, dtype)
      self.assertEqual(tuple(gates), () if name == "shared_bottom" else TASKS)
      for g in gates.values():
        self.assertEqual(g.shape[:2], (B, M))
      self.assertTrue(all(p.dtype == jnp.float32 for p in jax.tree.leaves(params(trunk))))
    # bfloat16 compute with float32 parameters (the same ones) stays close to float32.
    for t in TASKS:
      np.testing.assert_allclose(np.asarray(out[jnp.bfloat16][0][t], np.float32),
                                 out[jnp.float32][0][t], atol=0.1)

  def test_gates_are_distributions(self):
    x = inputs()
    _, gates = forward(make(CONFIGS["mmoe"]), x)
    all_gates = [g for g in gates.values()]
    self.assertEqual(gates["click"].shape, (B, M, 4))
    _, levels = forward(make(CONFIGS["ple"]), x, "level_gates")
    self.assertLen(levels, 2)
    self.assertEqual(levels[0][0].shape, (B, M, 3, 3))   # own 1 + shared 2, per task
    self.assertEqual(levels[0][1].shape, (B, M, 5))      # all 3 * 1 + 2 experts
    self.assertIsNone(levels[1][1])
    all_gates += [levels[0][0], levels[0][1], levels[1][0]]
    for g in all_gates:
      g = np.asarray(g)
      self.assertTrue(np.all(g >= 0))
      np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-6)

  def test_shared_bottom_is_gelu_of_its_mlp(self):
    trunk = make(CONFIGS["shared_bottom"])
    x = np.asarray(inputs())
    p = params(trunk)
    self.assertEqual(list(p), ["mlp"])
    l0, l1 = p["mlp"]["layers"][0], p["mlp"]["layers"][1]
    want = gelu(gelu(x @ l0["kernel"] + l0["bias"]) @ l1["kernel"] + l1["bias"])
    hidden, _ = forward(trunk, jnp.asarray(x))
    for t in TASKS:
      np.testing.assert_allclose(hidden[t], want, atol=1e-5)

  def test_linear_gives_every_task_the_input(self):
    trunk = make(dict(name="linear"))
    self.assertEqual(params(trunk), {})
    self.assertEqual(trunk.out_features, D)
    self.assertEqual(make(CONFIGS["ple"]).out_features, H)
    x = inputs()
    hidden, gates = forward(trunk, x)
    self.assertEqual(gates, {})
    for t in TASKS:
      np.testing.assert_array_equal(hidden[t], x)

  def test_initialisation(self):
    # shared_bottom initialises exactly as the recommender's former trunk, a layers.MLP made
    # first from the same rngs.
    kw = dict(dtype=jnp.float32, param_dtype=jnp.float32)
    trunk = experts.build(CONFIGS["shared_bottom"], D, H, TASKS, **kw, rngs=nnx.Rngs(0))
    mlp = layers.MLP((D, H, H), ("embed", "mlp"), **kw, rngs=nnx.Rngs(0))
    self.assertEqual(list(params(trunk)), ["mlp"])
    jax.tree.map(np.testing.assert_array_equal, params(trunk)["mlp"], params(mlp))
    # Each stacked expert matrix is scaled by its own fan-in (LeCun), not by experts x fan-in;
    # experts differ; biases start at zero; parameters stay float32 under bfloat16 compute.
    trunk = experts.build(dict(name="mmoe", num_experts=3), 64, 32, TASKS, dtype=jnp.bfloat16,
                          param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    p = params(trunk)
    for layer, fan_in in ((0, 64), (1, 32)):
      kernel = p["experts"]["layers"][layer]["kernel"]
      self.assertEqual(kernel.dtype, np.float32)
      np.testing.assert_allclose(kernel.std(axis=(1, 2)), fan_in ** -0.5, rtol=0.1)
      self.assertGreater(np.abs(kernel[0] - kernel[1]).min(), 0)
      np.testing.assert_array_equal(p["experts"]["layers"][layer]["bias"], 0)

  def test_mmoe_with_one_expert_is_that_expert(self):
    trunk = make(dict(name="mmoe", num_experts=1))
    x = np.asarray(inputs())
    want = expert_by_hand(params(trunk)["experts"], 0, x)
    hidden, gates = forward(trunk, jnp.asarray(x))
    for t in TASKS:
      np.testing.assert_allclose(hidden[t], want, atol=1e-5)
      np.testing.assert_array_equal(gates[t], 1.0)

  def test_mmoe_matches_loops_over_experts(self):
    trunk = make(CONFIGS["mmoe"])
    x = np.asarray(inputs())
    p = params(trunk)
    each = [expert_by_hand(p["experts"], e, x) for e in range(4)]
    hidden, gates = forward(trunk, jnp.asarray(x))
    for i, t in enumerate(TASKS):
      g = softmax(x @ p["gates"]["kernel"][i] + p["gates"]["bias"][i])
      np.testing.assert_allclose(gates[t], g, atol=1e-5)
      np.testing.assert_allclose(hidden[t], sum(g[..., e, None] * each[e] for e in range(4)),
                                 atol=1e-5)

  def test_ple_matches_loops(self):
    cfg = dict(name="ple", shared_experts=2, task_experts=2, levels=3)
    trunk = make(cfg)
    x = np.asarray(inputs())
    want = ple_by_hand(params(trunk), x, len(TASKS), 2, 2)
    hidden, levels = forward(trunk, jnp.asarray(x), "level_gates")
    for i, (_, task_gates, shared_gate) in enumerate(want):
      np.testing.assert_allclose(levels[i][0], np.stack(task_gates, -2), atol=1e-5)
      if shared_gate is None:
        self.assertIsNone(levels[i][1])
      else:
        np.testing.assert_allclose(levels[i][1], shared_gate, atol=1e-5)
    for i, t in enumerate(TASKS):
      np.testing.assert_allclose(hidden[t], want[-1][0][i], atol=1e-5)

  def test_ple_tasks_differ(self):
    hidden, gates = forward(make(CONFIGS["ple"]), inputs())
    for a, b in ((TASKS[0], TASKS[1]), (TASKS[1], TASKS[2])):
      self.assertGreater(float(jnp.abs(hidden[a] - hidden[b]).max()), 1e-3)
      self.assertGreater(float(jnp.abs(gates[a] - gates[b]).max()), 1e-4)

  @parameterized.named_parameters(
      ("zero_experts", dict(name="mmoe", num_experts=0), "model.trunk.num_experts=0"),
      ("float_experts", dict(name="mmoe", num_experts=2.0), "model.trunk.num_experts=2.0"),
      ("bool_levels", dict(name="ple", shared_experts=1, task_experts=1, levels=True),
       "model.trunk.levels=True"),
      ("zero_levels", dict(name="ple", shared_experts=1, task_experts=1, levels=0),
       "model.trunk.levels=0"),
      ("negative_shared", dict(name="ple", shared_experts=-1, task_experts=1, levels=2),
       "model.trunk.shared_experts=-1"),
      ("string_task", dict(name="ple", shared_experts=1, task_experts="2", levels=2),
       "model.trunk.task_experts='2'"),
      ("unknown_name", dict(name="moe"), "model.trunk.name='moe'.*mmoe, ple, shared_bottom"),
      ("unknown_argument", dict(name="shared_bottom", num_experts=2),
       "model.trunk: unknown argument.*num_experts"),
      ("missing_argument", dict(name="mmoe"), "model.trunk: missing argument.*num_experts"))
  def test_bad_config(self, cfg, message):
    with self.assertRaisesRegex(ConfigError, message):
      experts.validate(cfg)
    with self.assertRaisesRegex(ConfigError, message):
      make(cfg)


class MeshTest(parameterized.TestCase):
  """Forward and grad with parameters placed by their logical specs over (4, 2) devices."""

  @parameterized.named_parameters(("mmoe", "mmoe"), ("ple", "ple"))
  def test_sharded_equals_unsharded(self, name):
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    rules = (("mlp", "model"), ("batch", "data"))
    graphdef, state = nnx.split(make(CONFIGS[name], in_dim=5, hidden=6))
    shardings = mesh_lib.param_shardings(state, mesh, rules)
    p = nnx.to_pure_dict(state)
    x = inputs((8, 3, 5), seed=2)
    target = inputs((8, 3, 6), seed=3)

    def loss(p, x):
      hidden, gates = nnx.merge(graphdef, p)(x)
      return sum(jnp.mean((h - (i + 1) * target) ** 2) + jnp.mean(gates[t] ** 2)
                 for i, (t, h) in enumerate(hidden.items()))

    want = jax.jit(jax.value_and_grad(loss))(p, x)
    p_sh = jax.device_put(p, shardings)
    x_sh = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    specs = [s.spec for s in jax.tree.leaves(shardings)]
    self.assertIn(PartitionSpec(None, None, "model"), specs)  # expert kernels: hidden on model
    with activation_sharding(mesh, rules):
      got = jax.jit(jax.value_and_grad(loss), out_shardings=(None, shardings))(p_sh, x_sh)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
                 jax.device_get(got[1]), jax.device_get(want[1]))
    self.assertEqual(jax.tree.leaves(got[1])[0].sharding, jax.tree.leaves(shardings)[0])


if __name__ == "__main__":
  absltest.main()
