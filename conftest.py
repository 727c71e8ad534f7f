"""pytest's session set-up for every test path of the checkout (tests/ and the notebooks under nbval): a temporary
artifacts root, so the test suite never reads or writes a user's data, adapters or results; and ``--no-skips``, with
which CI fails a run in which any test or file was skipped (every real part must have run)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from slmlab.settings import ARTIFACTS_ENV

_SESSION_ARTIFACTS = "_slmlab_artifacts"


class SkipGate:
    """Collects every skip (a test's, or a whole file's at collection) and turns a passing run into a failed one."""

    def __init__(self) -> None:
        self.skips: list[str] = []

    def _add(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skips.append(f"{report.nodeid or report.fspath}: {reason}")

    def pytest_collectreport(self, report) -> None:
        self._add(report)

    def pytest_runtest_logreport(self, report) -> None:
        self._add(report)

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self.skips and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.skips:
            terminalreporter.section(f"{len(self.skips)} skipped, which fails this run (--no-skips)", red=True)
            for line in self.skips:
                terminalreporter.line(line)


def pytest_addoption(parser):
    parser.addoption(
        "--no-skips",
        action="store_true",
        help="fail the run when any test or file is skipped (CI: every real part must run here)",
    )


def pytest_configure(config):
    """Point SLMLAB_ARTIFACTS at a fresh folder before anything runs; notebook kernels inherit it."""
    folder = tempfile.mkdtemp(prefix="slmlab-test-artifacts-")
    setattr(config, _SESSION_ARTIFACTS, (folder, os.environ.get(ARTIFACTS_ENV)))
    os.environ[ARTIFACTS_ENV] = folder
    if config.getoption("--no-skips", False):
        config.pluginmanager.register(SkipGate(), "slmlab-no-skips")


def pytest_unconfigure(config):
    folder, previous = getattr(config, _SESSION_ARTIFACTS, (None, None))
    if folder is None:
        return
    if previous is None:
        os.environ.pop(ARTIFACTS_ENV, None)
    else:
        os.environ[ARTIFACTS_ENV] = previous
    shutil.rmtree(folder, ignore_errors=True)
