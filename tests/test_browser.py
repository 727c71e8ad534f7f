"""The learner's view in a real browser: chapter 00 run cell by cell in JupyterLab in headless Chromium, its playground
pressed, and every executed notebook photographed. Skipped, with the reason, where Playwright or chromium is missing."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from slmlab.report.screens import (
    CHROMIUM_ENV,
    BrowserViewError,
    browser_unavailable_reason,
    find_chromium,
    lab_browser,
    screens_dir,
    screenshot_notebooks,
)
from slmlab.settings import ARTIFACTS_ENV

ROOT = Path(__file__).resolve().parents[1]
UNAVAILABLE = browser_unavailable_reason()
needs_browser = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no browser view here: {UNAVAILABLE}")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPLY_SEPARATOR = "—"  # the playground prints the reply, then this dash, the settings and the speed
WIDGET_TIMEOUT_MS = 60_000
REPLY_TIMEOUT_MS = 120_000


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_chromium_prefers_the_configured_executable(monkeypatch, tmp_path):
    monkeypatch.setenv(CHROMIUM_ENV, str(_executable(tmp_path / "my-chromium")))
    assert find_chromium() == str(tmp_path / "my-chromium")


def test_a_missing_configured_chromium_is_named_in_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "absent"))
    assert find_chromium() is None
    reason = browser_unavailable_reason()
    assert reason and ("absent" in reason or "playwright" in reason)
    with pytest.raises(BrowserViewError), lab_browser(tmp_path):
        pass


@pytest.mark.browser
@needs_browser
def test_chapter_00_playground_replies_in_the_browser(tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    served = tmp_path / "notebooks"
    served.mkdir()
    shutil.copy2(ROOT / "notebooks" / "00_setup.ipynb", served)  # the committed notebook is never rewritten
    env = {"SLMLAB_QUICK": "1", ARTIFACTS_ENV: os.environ[ARTIFACTS_ENV], "SLMLAB_ROOT": str(ROOT)}
    with lab_browser(served, env) as tab:
        tab.open("00_setup.ipynb")
        assert tab.run_cells() >= 5
        page = tab.page
        form = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-button", has_text="Generate"))
        form.wait_for(timeout=WIDGET_TIMEOUT_MS)
        assert form.locator(".widget-textarea textarea").input_value()
        assert form.locator(".widget-dropdown select").count() == 1
        assert form.locator(".widget-slider").count() >= 5
        form.locator(".widget-textarea textarea").fill("What is the capital of France?")
        form.locator(".widget-button", has_text="Generate").click()
        try:
            form.locator(".widget-output").get_by_text("tokens/s").wait_for(timeout=REPLY_TIMEOUT_MS)
        except PlaywrightTimeout as timeout:
            raise AssertionError(f"pressing Generate showed no reply within {REPLY_TIMEOUT_MS // 1000} s") from timeout
        reply = form.locator(".widget-output").inner_text().rsplit(REPLY_SEPARATOR, 1)[0].strip()
        assert reply, "the playground's reply is empty"
        shot = tab.screenshot(screens_dir(quick=True) / "00_setup.png")
    assert shot.read_bytes().startswith(PNG_SIGNATURE)


def _executed_notebook(path: Path, title: str, code: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}"), nbformat.v4.new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    nbformat.write(notebook, path)
    return path


@pytest.mark.browser
@needs_browser
def test_screenshot_notebooks_writes_one_png_per_executed_notebook(tmp_path):
    notebooks = [
        _executed_notebook(tmp_path / "01_first.ipynb", "First", "print(6 * 7)"),
        _executed_notebook(tmp_path / "02_second.ipynb", "Second", "{'answer': 42}"),
    ]
    before = [nb.read_bytes() for nb in notebooks]
    written = screenshot_notebooks(notebooks, tmp_path / "screens")
    assert [p.name for p in written] == ["01_first.png", "02_second.png"]
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in written)
    assert [nb.read_bytes() for nb in notebooks] == before  # shown from a copy, never rewritten


@pytest.mark.browser
@needs_browser
def test_a_failing_cell_stops_the_run_with_its_error(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0"), nbformat.v4.new_code_cell("x = 2")]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "failing.ipynb")
    with lab_browser(tmp_path) as tab:
        tab.open("failing.ipynb")
        with pytest.raises(BrowserViewError, match="cell 1 failed: ZeroDivisionError"):
            tab.run_cells()
