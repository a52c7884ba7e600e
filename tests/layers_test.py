"""One layer order, guarded: every import inside vidrec_jax (top-level and in functions) goes
down the layers or sideways within one, and no modules import each other in a circle.

From the bottom: leaves (files, registry, config checks and records, metrics, pretrained
checkpoints) -> data -> models -> train -> eval -> rl / tuning / serving / reporting -> entry
points (main, cli, experiment, validate, recommend, export, sweep, report). Imports under
`if TYPE_CHECKING:` are for annotations only and are not counted.
"""

import ast
import os

from absl.testing import absltest

from tests import helpers

PACKAGE = "vidrec_jax"
LAYERS = {
    "files": 0, "registry": 0, "config_checks": 0, "config_io": 0, "run_spec": 0, "metrics": 0,
    "checkpoints": 0,
    "data": 1, "models": 2, "train": 3, "eval": 4,
    "rl": 5, "tuning": 5, "serving": 5, "reporting": 5,
    "main": 6, "cli": 6, "experiment": 6, "validate": 6, "recommend": 6, "export": 6, "sweep": 6,
    "report": 6, "": 6,
}
# Upward imports that are the design: a sweep runs and validates training runs.
ALLOWED = {
    ("vidrec_jax.tuning.study", "vidrec_jax.experiment"),
    ("vidrec_jax.tuning.study", "vidrec_jax.validate"),
    ("vidrec_jax.tuning.space", "vidrec_jax.validate"),
}
# The modules that may import ml_collections: the entry points that parse, check, record and
# search over the config file; below them the run's settings travel as run_spec objects.
CONFIG_DICT_MODULES = {"vidrec_jax.main", "vidrec_jax.sweep", "vidrec_jax.experiment",
                       "vidrec_jax.validate", "vidrec_jax.config_io"}
CONFIG_DICT_PACKAGES = ("vidrec_jax.tuning",)
# Known upward imports still to remove (none: the RL trainer moved to rl/trainer.py, which
# trainer discovery reaches).
DEBT: set[tuple[str, str]] = set()


def _modules() -> dict[str, str]:
  """Dotted module name -> file path, for every module of the package."""
  out = {}
  root = os.path.join(helpers.REPO, PACKAGE)
  for dirpath, _, names in os.walk(root):
    for n in names:
      if n.endswith(".py"):
        path = os.path.join(dirpath, n)
        mod = os.path.relpath(path, helpers.REPO)[:-3].replace(os.sep, ".")
        out[mod[:-len(".__init__")] if mod.endswith(".__init__") else mod] = path
  return out


def _runtime_imports(tree: ast.AST):
  """Import nodes outside `if TYPE_CHECKING:` blocks."""
  skip = set()
  for node in ast.walk(tree):
    if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"):
      skip.update(id(n) for n in ast.walk(node))
  for node in ast.walk(tree):
    if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
      yield node


def import_graph() -> dict[str, set[str]]:
  """Module -> the package modules it imports (a `from m import name` of a submodule counts as
  that submodule)."""
  mods = _modules()

  def resolve(name: str) -> str | None:
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for mod, path in mods.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    deps = set()
    for node in _runtime_imports(tree):
      if isinstance(node, ast.ImportFrom):
        if node.level or not (node.module or "").startswith(PACKAGE):
          continue
        names = [f"{node.module}.{a.name}" for a in node.names]
      else:
        names = [a.name for a in node.names if a.name.startswith(PACKAGE)]
      deps.update(r for r in map(resolve, names) if r and r != mod)
    graph[mod] = deps
  return graph


def config_dict_importers() -> set[str]:
  """Modules that import ml_collections anywhere (TYPE_CHECKING blocks included)."""
  out = set()
  for mod, path in _modules().items():
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
               else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
      if any(n.split(".")[0] == "ml_collections" for n in names):
        out.add(mod)
  return out


def layer(mod: str) -> int:
  top = mod.split(".")[1] if "." in mod else ""
  return LAYERS[top]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected groups of more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        out.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


class LayersTest(absltest.TestCase):

  def test_every_top_level_name_has_a_layer(self):
    for mod in import_graph():
      self.assertIn(mod.split(".")[1] if "." in mod else "", LAYERS, mod)

  def test_no_upward_imports(self):
    graph = import_graph()
    upward = {(a, b) for a, deps in graph.items() for b in deps if layer(b) > layer(a)}
    self.assertEqual(upward - ALLOWED - DEBT, set(), "imports that go up the layers")
    self.assertEqual(DEBT - upward, set(), "fixed debt: remove it from DEBT")

  def test_the_config_dict_stays_in_the_entry_points(self):
    below = {m for m in config_dict_importers() if m not in CONFIG_DICT_MODULES
             and not m.startswith(CONFIG_DICT_PACKAGES)}
    self.assertEqual(below, set(), "modules below the entry points that import ml_collections "
                     "(take vidrec_jax/run_spec.py objects instead)")
    self.assertIn("vidrec_jax.experiment", config_dict_importers())  # the scan sees imports

  def test_no_import_cycles(self):
    self.assertEqual(cycles(import_graph()), [])

  def test_the_checker_sees_an_upward_import_and_a_cycle(self):
    graph = {"vidrec_jax.data.a": {"vidrec_jax.models.b"}, "vidrec_jax.models.b": set()}
    self.assertGreater(layer("vidrec_jax.models.b"), layer("vidrec_jax.data.a"))
    graph["vidrec_jax.models.b"].add("vidrec_jax.models.c")
    graph["vidrec_jax.models.c"] = {"vidrec_jax.models.b"}
    self.assertEqual(cycles(graph), [["vidrec_jax.models.b", "vidrec_jax.models.c"]])


if __name__ == "__main__":
  absltest.main()
