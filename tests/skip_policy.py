"""A pytest plugin that fails the run when a test skips for a reason outside an allow-list.

A skip reads as a pass in CI's summary, so a missing test extra or a broken import can hide a
whole suite of parity tests for good. tests/conftest.py registers this plugin with its
allow-list; tests/skip_policy_test.py checks it, xdist included.
"""

from __future__ import annotations

import pytest


def register(config: pytest.Config, allowed: tuple[str, ...]) -> None:
  """Registers the check on `config`, unless this process is an xdist worker.

  xdist hands every worker's reports to the controller's pytest_runtest_logreport and
  pytest_collectreport, and the controller's exit status is the run's: the check lives there.
  """
  if hasattr(config, "workerinput"):
    return
  config.pluginmanager.register(SkipPolicy(allowed), "vidrec_skip_policy")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
  """The reason given to skip(), without pytest's 'Skipped: ' prefix."""
  longrepr = report.longrepr
  # (path, line, message) for a skip, a list once it has crossed from an xdist worker.
  text = str(longrepr[2]) if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3 \
      else str(longrepr)
  return text.removeprefix("Skipped: ")


class SkipPolicy:
  """Collects the skips whose reason contains none of `allowed`, and fails the run on them."""

  def __init__(self, allowed: tuple[str, ...]):
    self.allowed = tuple(allowed)
    self.disallowed: list[tuple[str, str]] = []  # (node id, reason)

  def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
    # An expected failure reports as skipped too; it is not a skip.
    if not report.skipped or hasattr(report, "wasxfail"):
      return
    reason = _reason(report)
    if not any(a in reason for a in self.allowed):
      self.disallowed.append((report.nodeid, reason))

  def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
    self._note(report)

  def pytest_collectreport(self, report: pytest.CollectReport) -> None:
    self._note(report)  # a module-level skip

  def pytest_sessionfinish(self, session: pytest.Session) -> None:
    # Runs before the terminal summary and before pytest returns session.exitstatus. A run that
    # failed or was interrupted keeps its own status.
    if self.disallowed and session.exitstatus == pytest.ExitCode.OK:
      session.exitstatus = pytest.ExitCode.TESTS_FAILED

  def pytest_terminal_summary(self, terminalreporter) -> None:
    if not self.disallowed:
      return
    terminalreporter.write_sep("=", "skips outside the allow-list (tests/conftest.py)", red=True)
    for nodeid, reason in self.disallowed:
      terminalreporter.write_line(f"SKIP NOT ALLOWED {nodeid}: {reason}")
    terminalreporter.write_line(
        f"{len(self.disallowed)} skip(s) not allowed: install what they need (the test extras: "
        "README's test command), or allow the reason in tests/conftest.py with why.")
