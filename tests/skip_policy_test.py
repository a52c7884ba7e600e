"""tests/skip_policy.py: a skip outside the allow-list fails the run and is named, under xdist too.

Each case runs a small pytest session of its own (pytester) whose conftest registers the plugin
as tests/conftest.py does, so the check cannot stop working unnoticed.
"""

import os

import pytest

pytest_plugins = ["pytester"]

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFTEST = """
from tests import skip_policy

def pytest_configure(config):
  skip_policy.register(config, ("browser is not installed",))
"""

# Every way a test here skips: pytest.skip, unittest's skipTest (absltest's), a skip in
# setUpClass and a module-level skip; an xfail and a pass, which are no skips.
_TESTS = """
import unittest
import pytest

def test_passes():
  pass

def test_allowed():
  pytest.skip("the browser is not installed (apt-get install it)")

def test_not_allowed():
  pytest.skip("torchvision is not importable: boom")

@pytest.mark.xfail(reason="expected", strict=True)
def test_xfail():
  assert False

class Case(unittest.TestCase):

  def test_skiptest(self):
    self.skipTest("weights not installed")

class SetUpClassCase(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    raise unittest.SkipTest("cv2 is not installed")

  def test_a(self):
    pass
"""

_MODULE_SKIP = """
import pytest
pytest.skip("safetensors is not installed", allow_module_level=True)
"""


@pytest.fixture(name="suite")
def _suite(pytester, monkeypatch):
  # `from tests import skip_policy` in the inner conftest, and in xdist's worker processes.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (_REPO, os.environ.get("PYTHONPATH", "")) if p))
  monkeypatch.syspath_prepend(_REPO)
  pytester.makeconftest(_CONFTEST)
  return pytester


def _disallowed(result) -> list[str]:
  return sorted(l for l in result.outlines if l.startswith("SKIP NOT ALLOWED "))


def test_only_allowed_skips_pass(suite):
  suite.makepyfile(only_allowed_test="""
import pytest

def test_passes():
  pass

def test_allowed():
  pytest.skip("the browser is not installed")
""")
  result = suite.runpytest("-p", "no:cacheprovider", "only_allowed_test.py")
  result.assert_outcomes(passed=1, skipped=1)
  assert result.ret == pytest.ExitCode.OK
  assert not _disallowed(result)


_MIXED_DISALLOWED = [
    "SKIP NOT ALLOWED mixed_test.py::Case::test_skiptest: weights not installed",
    "SKIP NOT ALLOWED mixed_test.py::SetUpClassCase::test_a: cv2 is not installed",
    "SKIP NOT ALLOWED mixed_test.py::test_not_allowed: torchvision is not importable: boom",
    "SKIP NOT ALLOWED module_skip_test.py: safetensors is not installed",
]


@pytest.mark.parametrize("xdist", [False, True])
def test_other_skips_fail_the_run_and_are_named(suite, xdist):
  # Under xdist (as CI runs it) the skips happen in worker processes and the verdict is the
  # controller's.
  suite.makepyfile(mixed_test=_TESTS, module_skip_test=_MODULE_SKIP)
  if xdist:
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-q", "-rs")
  else:
    result = suite.runpytest("-p", "no:cacheprovider", "-rs")
  result.assert_outcomes(passed=1, skipped=5, xfailed=1)
  assert result.ret == pytest.ExitCode.TESTS_FAILED
  assert _disallowed(result) == _MIXED_DISALLOWED
  # One section, the controller's.
  assert len([l for l in result.outlines if "skips outside the allow-list" in l]) == 1


def test_a_failure_keeps_its_exit_status(suite):
  suite.makepyfile(failing_test="""
import pytest

def test_fails():
  assert False

def test_not_allowed():
  pytest.skip("torch is not installed")
""")
  result = suite.runpytest("-p", "no:cacheprovider", "failing_test.py")
  result.assert_outcomes(failed=1, skipped=1)
  assert result.ret == pytest.ExitCode.TESTS_FAILED
  assert _disallowed(result) == [
      "SKIP NOT ALLOWED failing_test.py::test_not_allowed: torch is not installed"]
