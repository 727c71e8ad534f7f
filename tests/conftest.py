"""Shared fixtures: a tiny random Llama (built once per session) and the real packaged model."""

from __future__ import annotations

import pytest

from slmlab.testing import make_tiny_llama


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
