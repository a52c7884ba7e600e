"""Test set-up, run in every pytest(-xdist) worker before any test module imports JAX, and the
allow-list of skips (any other skip fails the run: tests/skip_policy.py)."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "vidrec_jax_test_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

from tests import skip_policy  # noqa: E402

# A skip fails the run unless its reason contains one of these: CI shows every skip (-rs), and
# only these may pass it. Each is a thing the test extras cannot install.
ALLOWED_SKIPS = (
    # tuning_test's screenshot of the report page: Chromium is a Debian package, not a pip one,
    # and not on a new machine (a few hundred MB of apt for one test). The same page's HTML,
    # plots and tables are checked without a browser by the other report tests.
    "headless Chromium is not installed",
)


def pytest_configure(config):
  skip_policy.register(config, ALLOWED_SKIPS)
