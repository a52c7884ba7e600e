"""The docs stay navigable: README.md a landing page, no other page a wall, every relative link
resolving, and README's test command the one CI runs."""

import os
import re
import subprocess

from absl.testing import absltest

from tests import helpers

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[str]:
  out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                        "*.md"], capture_output=True, text=True, check=True,
                       cwd=helpers.REPO).stdout.split()
  return [p for p in out if os.path.exists(os.path.join(helpers.REPO, p))]


class DocsTest(absltest.TestCase):

  def test_page_lengths(self):
    files = _markdown_files()
    self.assertIn("README.md", files)
    lengths = {}
    for p in files:
      with open(os.path.join(helpers.REPO, p)) as f:
        lengths[p] = len(f.read().splitlines())
    self.assertLessEqual(lengths["README.md"], 200)
    long = {p: n for p, n in lengths.items()
            if n > 300 and not p.startswith("benchmarks/results/")}
    self.assertEqual(long, {}, "pages over 300 lines outside benchmarks/results/")

  def test_relative_links_resolve(self):
    broken = []
    for p in _markdown_files():
      with open(os.path.join(helpers.REPO, p)) as f:
        text = f.read()
      for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
          continue  # a URL or an anchor in the same page
        path = os.path.normpath(os.path.join(helpers.REPO, os.path.dirname(p),
                                             target.split("#")[0]))
        if not os.path.exists(path):
          broken.append(f"{p} -> {target}")
    self.assertEqual(broken, [])

  def test_readme_test_command_is_what_ci_runs(self):
    with open(os.path.join(helpers.REPO, ".ci", "run")) as f:
      ci = [l for l in f.read().splitlines() if "pytest" in l]
    with open(os.path.join(helpers.REPO, "README.md")) as f:
      readme = f.read()
    self.assertLen(ci, 1)
    self.assertIn("\n" + ci[0] + "\n", readme)


if __name__ == "__main__":
  absltest.main()
