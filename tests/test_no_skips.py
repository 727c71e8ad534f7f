"""``pytest --no-skips`` (what CI runs): a run with any skipped test or file fails and lists each skip with its reason;
an expected failure (xfail) is not a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "test_some.py": "import pytest\n\ndef test_ok():\n    pass\n\ndef test_skipped():\n    pytest.skip('no widget here')\n\n"
    "@pytest.mark.xfail(strict=True)\ndef test_known_bug():\n    assert False\n",
    "test_module.py": "import pytest\n\npytest.importorskip('slmlab_no_such_module')\n",
}


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    # the checkout's conftest.py loaded as a plugin by name; no other plugin is needed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_any_skip_fails_the_run_and_is_listed(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    gated = _pytest(tmp_path, "--no-skips")
    assert gated.returncode == 1, gated.stdout
    assert "2 skipped, which fails this run (--no-skips)" in gated.stdout
    assert "test_some.py::test_skipped: Skipped: no widget here" in gated.stdout
    assert "test_module.py: Skipped: could not import 'slmlab_no_such_module'" in gated.stdout
    assert _pytest(tmp_path).returncode == 0  # without the flag a skip is only reported
    assert _pytest(tmp_path, "--no-skips", "test_some.py::test_ok", "test_some.py::test_known_bug").returncode == 0
