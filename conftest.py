"""pytest's session set-up for every test path of the checkout (tests/ and the notebooks under nbval): a temporary
artifacts root, so the test suite never reads or writes a user's data, adapters or results."""

from __future__ import annotations

import os
import shutil
import tempfile

from slmlab.settings import ARTIFACTS_ENV

_SESSION_ARTIFACTS = "_slmlab_artifacts"


def pytest_configure(config):
    """Point SLMLAB_ARTIFACTS at a fresh folder before anything runs; notebook kernels inherit it."""
    folder = tempfile.mkdtemp(prefix="slmlab-test-artifacts-")
    setattr(config, _SESSION_ARTIFACTS, (folder, os.environ.get(ARTIFACTS_ENV)))
    os.environ[ARTIFACTS_ENV] = folder


def pytest_unconfigure(config):
    folder, previous = getattr(config, _SESSION_ARTIFACTS, (None, None))
    if folder is None:
        return
    if previous is None:
        os.environ.pop(ARTIFACTS_ENV, None)
    else:
        os.environ[ARTIFACTS_ENV] = previous
    shutil.rmtree(folder, ignore_errors=True)
