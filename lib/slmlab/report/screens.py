"""The learner's view in a real browser: JupyterLab started on 127.0.0.1, notebooks opened, run and photographed in a
headless Chromium driven by Playwright (the system's chromium executable; Playwright downloads no browser).

Entry point: :func:`screenshot_notebooks` (one PNG per executed notebook in ``results/report/screens/NN_name.png``);
:func:`lab_browser` gives a :class:`LabPage` that opens a notebook, runs its cells one by one and takes a screenshot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex

from slmlab.course import discover_chapters
from slmlab.errors import SlmLabError
from slmlab.report import spec
from slmlab.settings import artifacts_root
from slmlab.spec import executed_notebooks

CHROMIUM_ENV = "SLMLAB_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
SETUP_HINT = "run `make test-browser` (Debian/Ubuntu) or set SLMLAB_CHROMIUM to a chromium executable"

# JupyterLab settings of the photographed view: every cell attached to the page (so all of them can be run and
# measured), no empty space after the last cell, no news pop-up.
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "scrollPastEnd": False}}
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}

NOTARY_SECRET = "notebook_secret"  # nbformat's NotebookNotary reads its signing key from this file of its data_dir
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
SCROLLER = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
STATUS_BAR = "#jp-main-statusbar"

CELL_COUNT_JS = "([selector, count]) => document.querySelectorAll(selector + ' .jp-Cell').length === count"
# the status bar names the kernel once one is started: "Python 3 (ipykernel) | Idle"
KERNEL_IDLE_JS = """(selector) => {
    const text = document.querySelector(selector)?.innerText || '';
    return text.includes('| Idle') && !text.includes('No Kernel');
}"""
# True once cell ``index`` shows execution count ``count`` in its prompt
CELL_DONE_JS = """([selector, index, count]) => {
    const prompt = document.querySelectorAll(selector + ' .jp-Cell')[index]?.querySelector('.jp-InputPrompt');
    return prompt ? prompt.textContent.includes('[' + count + ']') : false;
}"""
# "Name: value" of the error output of cell ``index``, or "" (errors render like stderr, so the cell model is read;
# the server exposes the application as window.jupyterapp for this)
CELL_ERROR_JS = """(index) => {
    const cell = window.jupyterapp.shell.currentWidget.content.model.cells.get(index);
    const error = cell.outputs.toJSON().find(output => output.output_type === 'error');
    return error ? error.ename + ': ' + error.evalue : '';
}"""
IMAGES_LOADED_JS = "() => Array.from(document.images).every(image => image.complete)"
# the page height that shows the whole notebook: the window, less the scroller's visible part, plus all it scrolls
FULL_HEIGHT_JS = """(selector) => {
    const outer = document.querySelector(selector);
    return document.documentElement.clientHeight - outer.clientHeight + outer.scrollHeight;
}"""
# saved widget views are drawn from the notebook's widget state; the fresh kernel does not hold their models, which
# JupyterLab marks with a broken-link icon on each: hidden, so the picture shows the widgets as the chapter drew them
SAVED_WIDGETS_CSS = ".jupyter-widgets-disconnected::before { content: none !important; }"
SCROLL_TO_TOP_JS = "(selector) => { document.querySelector(selector).scrollTop = 0; }"


class BrowserViewError(SlmLabError):
    """JupyterLab or a notebook in the browser did not do what the learner would see it do, within its time."""


@dataclass(frozen=True)
class ScreenConfig:
    """Window size and the time limit of every wait, in seconds."""

    width: int = 1280
    height: int = 900
    max_height: int = 16000  # a very long notebook is cut here rather than making a huge image
    start_timeout_s: float = 90.0  # JupyterLab answering its REST API
    open_timeout_s: float = 90.0  # a notebook shown with its kernel idle
    cell_timeout_s: float = 180.0  # one cell running to its end
    run_timeout_s: float = 300.0  # all the cells of one notebook
    settle_s: float = 1.0  # for outputs to lay out after the last change


def find_chromium() -> str | None:
    """The chromium executable: ``$SLMLAB_CHROMIUM`` when set, else ``chromium`` or ``chromium-browser`` on PATH."""
    configured = os.environ.get(CHROMIUM_ENV, "").strip()
    if configured:
        return shutil.which(configured)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def browser_unavailable_reason() -> str | None:
    """Why the browser view cannot be shown here (Playwright or chromium missing), or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return f"playwright is not installed (pip install -e '.[browser]'); {SETUP_HINT}"
    if find_chromium() is None:
        configured = os.environ.get(CHROMIUM_ENV, "").strip()
        where = f"{CHROMIUM_ENV}={configured} is not an executable" if configured else "no chromium on PATH"
        return f"{where}; {SETUP_HINT}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_json(path: Path, content: Mapping) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 (free port, random token) serving ``root_dir``; a context manager.

    Its configuration, runtime, settings and workspace folders are temporary, so a user's JupyterLab set-up
    neither changes the view nor is changed. Kernels inherit the process environment updated with ``env``.
    """

    def __init__(self, root_dir: Path, env: Mapping[str, str] | None = None, config: ScreenConfig = ScreenConfig()):
        self.root_dir = Path(root_dir).resolve()
        self.env = dict(env or {})
        self.config = config
        self.port = free_port()
        self.token = token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._home: tempfile.TemporaryDirectory | None = None
        self._process: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        """The browser address of ``path`` (``doc/tree/x.ipynb``), logged in with the token."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        """Call the server's REST API; returns the decoded JSON reply (None when empty)."""
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def trust(self, name: str) -> None:
        """Mark notebook ``name`` (relative to the root) trusted for this server only, so its saved widgets and HTML
        outputs render as they did when it ran; the signature lives in the server's temporary folder."""
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary(data_dir=str(self._notary_dir()))
        notary.sign(nbformat.read(self.root_dir / name, as_version=4))

    def _notary_dir(self) -> Path:
        if self._home is None:
            raise BrowserViewError("JupyterLab is not running: use it as a context manager")
        return Path(self._home.name) / "notary"

    def shutdown_kernels(self) -> None:
        """Stop every kernel the server runs (each opened notebook starts one)."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def _prepare_home(self, home: Path) -> None:
        for name, content in LAB_SETTINGS.items():
            _write_json(home / "settings" / name, content)
        _write_json(home / "config" / "labconfig" / "page_config.json", PAGE_CONFIG)
        # the key that signs trusted notebooks, written before the server starts so that it and trust() share it
        self._notary_dir().mkdir()
        (self._notary_dir() / NOTARY_SECRET).write_bytes(os.urandom(64))

    def _command(self, home: Path) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={home / 'settings'}",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            f"--NotebookNotary.data_dir={self._notary_dir()}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--LabApp.expose_app_in_browser=True",
        ]  # window.jupyterapp: LabPage reads cell errors from the model
        if os.geteuid() == 0:
            command.append("--allow-root")  # containers and CI run as root; the server listens on 127.0.0.1 only
        return command

    def __enter__(self) -> JupyterLab:
        self._home = tempfile.TemporaryDirectory(prefix="slmlab-lab-")
        home = Path(self._home.name)
        self._prepare_home(home)
        env = {**os.environ, **self.env, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
        with (home / "server.log").open("wb") as log:
            # a session of its own, so stopping the server can also stop the kernels it started
            self._process = subprocess.Popen(
                self._command(home), env=env, cwd=self.root_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_until_answering()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _log_tail(self, characters: int = 3000) -> str:
        path = Path(self._home.name) / "server.log" if self._home else None
        return path.read_text(encoding="utf-8", errors="replace")[-characters:] if path and path.exists() else ""

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserViewError(f"JupyterLab exited with code {self._process.returncode}:\n{self._log_tail()}")
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise BrowserViewError(
            f"JupyterLab did not answer on {self.base_url} within {self.config.start_timeout_s:.0f} s:\n{self._log_tail()}"
        )

    def __exit__(self, *_exc) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                self.api("shutdown", method="POST")  # stops the kernels too
                self._process.wait(timeout=15)
            except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=15)
        self._process = None
        if self._home is not None:
            self._home.cleanup()
            self._home = None


class LabPage:
    """One browser tab on a :class:`JupyterLab`: open a notebook, run its cells as a learner would, photograph it."""

    def __init__(self, page, lab: JupyterLab, config: ScreenConfig = ScreenConfig()):
        self.page = page
        self.lab = lab
        self.config = config

    def open(self, name: str, kernel: bool = True) -> None:
        """Show notebook ``name`` (relative to the server's root) alone in the window, every cell laid out; with
        ``kernel``, wait until its kernel is idle."""
        expected = len(json.loads((self.lab.root_dir / name).read_text(encoding="utf-8"))["cells"])
        self.page.goto(self.lab.url(f"doc/tree/{name}"), timeout=self.config.open_timeout_s * 1000)
        self._wait_until(CELL_COUNT_JS, [NOTEBOOK, expected], f"the {expected} cells of {name}", self.config.open_timeout_s)
        if kernel:
            self._wait_until(KERNEL_IDLE_JS, STATUS_BAR, f"the idle kernel of {name}", self.config.open_timeout_s)

    def _wait_until(self, script: str, arg: object, what: str, timeout_s: float) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000, polling=250)
        except PlaywrightTimeout as timeout:
            raise BrowserViewError(f"{what} did not appear within {timeout_s:.0f} s") from timeout

    @property
    def cells(self):
        return self.page.locator(f"{NOTEBOOK} .jp-Cell")

    def run_cells(self) -> int:
        """Run every cell in order, each one selected and run with Ctrl+Enter, waiting for it to finish; returns the
        number of code cells run. A cell that fails stops the run with its error's name and message; so does a cell
        still running after ``cell_timeout_s``, or once ``run_timeout_s`` has passed since the first cell."""
        executed, deadline = 0, time.monotonic() + self.config.run_timeout_s
        for index in range(self.cells.count()):
            cell = self.cells.nth(index)
            cell.locator(".jp-InputPrompt").click()  # selects the cell in command mode, as a learner's click does
            self.page.keyboard.press("Control+Enter")
            if "jp-CodeCell" in (cell.get_attribute("class") or ""):
                executed += 1
                self._wait_for_cell(index, executed, min(self.config.cell_timeout_s, deadline - time.monotonic()))
        return executed

    def _wait_for_cell(self, index: int, count: int, timeout_s: float) -> None:
        self._wait_until(CELL_DONE_JS, [NOTEBOOK, index, count], f"the end of cell {index}", max(timeout_s, 1.0))
        error = self.page.evaluate(CELL_ERROR_JS, index)
        if error:
            raise BrowserViewError(f"cell {index} failed: {error}")

    def screenshot(self, path: Path) -> Path:
        """Save the whole notebook as one PNG (the window grown to the notebook's height, up to ``max_height``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_function(IMAGES_LOADED_JS, timeout=self.config.open_timeout_s * 1000)
        self.page.wait_for_timeout(self.config.settle_s * 1000)
        height = min(int(self.page.evaluate(FULL_HEIGHT_JS, SCROLLER)), self.config.max_height)
        self.page.set_viewport_size({"width": self.config.width, "height": max(height, self.config.height)})
        self.page.evaluate(SCROLL_TO_TOP_JS, SCROLLER)
        self.page.wait_for_timeout(self.config.settle_s * 1000)
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size({"width": self.config.width, "height": self.config.height})
        return path


@contextmanager
def lab_browser(
    root_dir: Path, env: Mapping[str, str] | None = None, config: ScreenConfig = ScreenConfig(), chromium: str | None = None
) -> Iterator[LabPage]:
    """JupyterLab on ``root_dir`` and a headless Chromium tab on it, both stopped on exit.

    ``chromium`` defaults to :func:`find_chromium`; BrowserViewError says what is missing when nothing is found.
    """
    reason = browser_unavailable_reason() if chromium is None else None
    if reason:
        raise BrowserViewError(reason)
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        lab = stack.enter_context(JupyterLab(root_dir, env, config))
        playwright = stack.enter_context(sync_playwright())
        # --no-sandbox: Chromium refuses its sandbox when run as root, as in containers and CI
        browser = playwright.chromium.launch(executable_path=chromium or find_chromium(), headless=True, args=["--no-sandbox"])
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": config.width, "height": config.height})
        yield LabPage(page, lab, config)


def screens_dir(quick: bool | None = None) -> Path:
    """Where the screenshots go: ``<artifacts root>/results/report/screens`` of the mode (created)."""
    folder = spec.screens_dir(artifacts_root(quick))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def executed_chapters(quick: bool | None = None) -> list[Path]:
    """The executed chapter notebooks the course runner wrote (``<artifacts root>/results/notebooks/NN_name.ipynb``)."""
    return discover_chapters(executed_notebooks(artifacts_root(quick)))


def screenshot_notebooks(
    notebooks: Sequence[Path] | None = None,
    out_dir: Path | None = None,
    config: ScreenConfig = ScreenConfig(),
    chromium: str | None = None,
    quick: bool | None = None,
) -> list[Path]:
    """One full-notebook PNG per executed notebook, as JupyterLab shows it (outputs as saved; nothing is run).

    ``notebooks`` defaults to :func:`executed_chapters` and ``out_dir`` to :func:`screens_dir` of the mode; each
    image is named after its notebook (``NN_name.png``). The notebooks are shown from a temporary copy, so
    JupyterLab never rewrites them; the copies are trusted (they are the course's own outputs), so saved widget
    views and HTML show as they did when the chapter ran.
    """
    notebooks = [Path(nb) for nb in (executed_chapters(quick) if notebooks is None else notebooks)]
    out_dir = Path(out_dir) if out_dir else screens_dir(quick)
    if not notebooks:
        return []
    with tempfile.TemporaryDirectory(prefix="slmlab-screens-") as served:
        for notebook in notebooks:
            shutil.copy2(notebook, Path(served) / notebook.name)
        written = []
        with lab_browser(Path(served), config=config, chromium=chromium) as tab:
            for notebook in notebooks:
                tab.lab.trust(notebook.name)
                tab.open(notebook.name)
                tab.page.add_style_tag(content=SAVED_WIDGETS_CSS)
                written.append(tab.screenshot(out_dir / f"{notebook.stem}.png"))
                tab.lab.shutdown_kernels()
        return written
