"""Shared fixtures: a tiny random Llama (built once per session) and the real packaged model; a temporary
artifacts root for the whole session, so the tests never read or write a user's data, adapters or results."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from slmlab.settings import ARTIFACTS_ENV
from slmlab.testing import make_tiny_llama

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_torch(tiny_model_dir):
    import slmlab

    return slmlab.load_model(str(tiny_model_dir), backend="torch")


@pytest.fixture(scope="session")
def tiny_mlx(tiny_model_dir):
    import slmlab
    from slmlab.backends import mlx_available

    if not mlx_available():
        pytest.skip("mlx / mlx-lm not importable here")
    return slmlab.load_model(str(tiny_model_dir), backend="mlx")


@pytest.fixture(scope="session")
def real_torch():
    import slmlab

    return slmlab.load_model(slmlab.DEFAULT_MODEL, backend="torch")
