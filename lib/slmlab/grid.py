"""Experiment grids: a YAML file names one ``slmlab`` command, the options every cell shares and the options swept
over; each cell (one point of the sweep's cartesian product) runs that command in a subprocess, serially or on Ray.

A grid file (see ``grids/*.yaml``)::

    name: lora_rank_lr                 # folder under results/grid/ (default: the file's name)
    description: free text
    command: train                     # an slmlab command path: "data", "train", "ace run", "mcts run", ...
    seed: 0                            # passed as --seed to every cell
    resources: {num_cpus: 1, num_gpus: 0}   # what one cell asks of Ray
    fixed: {steps: 30}                 # options of every cell (the command's own option names)
    sweep: {rank: [4, 8], learning_rate: [1e-4, 3e-4]}
    done: metrics.json                 # a file the command writes into its output folder when finished

Each cell writes to ``<artifacts root>/results/grid/<name>/<cell id>/`` (the command's --out, --run-dir, --run or
--results option), plus ``cell.json`` (status, return code, seconds, command line, the end of stderr on failure) and
``cell.log``. A cell whose record says ok for the same command line (and whose ``done`` file exists) is skipped
on the next run. The file is checked against the real command-line parser, the model registry and the task
registry before any cell starts; every problem names the file, the line and the key.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from slmlab.chapters import model_is_folder, model_words
from slmlab.errors import ProblemListError, SlmLabError
from slmlab.io import atomic_write_json, atomic_write_text
from slmlab.models.registry import REGISTRY, looks_like_hub_id
from slmlab.settings import ARTIFACTS_ENV, artifacts_root, project_root
from slmlab.spec import CELL_LOG_FILE, CELL_RECORD_FILE, GRID_SUMMARY_FILE, grids_path
from slmlab.tasks import SPLITS, TASKS

TOP_KEYS = ("name", "description", "command", "seed", "resources", "fixed", "sweep", "done")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
OUTPUT_OPTIONS = ("--out", "--run-dir", "--run", "--results")  # the first one a command has receives the cell folder
MODEL_OPTIONS = ("--model", "--reflector-model")
TASK_OPTIONS = {"ace run": ("--task", "--train-task")}
PASSED_ENV = (ARTIFACTS_ENV, "SLMLAB_QUICK", "SLMLAB_ROOT")  # the driver's settings every cell runs under
RAY_DEFAULT_PORT = 6379
RAY_CLIENT_PORT = 10001
RAY_AUTH_ENV = "RAY_AUTH_MODE"
RAY_GCS_PING = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # gRPC methods of Ray's GCS and client server (ray/protobuf)
RAY_CLIENT_PING = "/ray.rpc.RayletDriver/ClusterInfo"
STDERR_LINES = 20
_SAFE = re.compile(r"[^\w.+=-]")


class GridFileError(ProblemListError):
    """A grid file that cannot run: every problem as ``file:line: key: why``."""


class RayClusterError(SlmLabError):
    """A Ray cluster that does not answer, refuses the connection, or cannot hold one cell."""


@dataclass(frozen=True)
class Resources:
    """What one cell asks of Ray."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class RunOptions:
    """How a grid runs: a local Ray (``workers`` CPUs, default all), an existing cluster, or serially without Ray."""

    address: str | None = None
    connect_timeout: float = 10.0
    workers: int | None = None
    serial: bool = False
    rerun: bool = False


@dataclass(frozen=True)
class Cell:
    """One point of the sweep: its id, the ``slmlab`` arguments that run it, and its folder."""

    id: str
    values: dict  # swept option -> the value's label in the id
    args: tuple[str, ...]
    folder: Path
    done_file: str | None = None

    @property
    def command_line(self) -> str:
        return "slmlab " + shlex.join(self.args)

    @property
    def record_path(self) -> Path:
        return self.folder / CELL_RECORD_FILE

    def finished(self) -> bool:
        """True when the last run of exactly this command line succeeded (and wrote the ``done`` file)."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if record.get("status") != "ok" or record.get("command") != self.command_line:
            return False
        return self.done_file is None or (self.folder / self.done_file).is_file()


@dataclass(frozen=True)
class Grid:
    name: str
    source: Path
    command: tuple[str, ...]
    resources: Resources
    cells: tuple[Cell, ...]
    folder: Path


@dataclass
class CellResult:
    id: str
    status: str  # ok, failed or skipped
    command: str
    returncode: int | None = None
    seconds: float = 0.0
    error: list[str] = field(default_factory=list)
    host: str = ""

    @property
    def reason(self) -> str:
        """The last line of the error, e.g. ``slmlab: error: ...``."""
        return next((line for line in reversed(self.error) if line.strip()), "")


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run one cell: the cell, the driver's slmlab settings and its working folder."""

    cell: Cell
    env: dict
    cwd: str


# --- reading and checking the file ------------------------------------------------------------------------
class _Problems:
    """Collects ``file:line: key: why`` messages so the whole file is checked in one pass."""

    def __init__(self, source: Path):
        self.source, self.found = source, []

    def add(self, node: yaml.Node, key: str, why: str) -> None:
        self.found.append(f"{self.source}:{node.start_mark.line + 1}: {key}: {why}")

    def raise_any(self) -> None:
        if self.found:
            raise GridFileError(self.found)


def _value(node: yaml.Node) -> object:
    return yaml.constructor.SafeConstructor().construct_document(node)


def _mapping(node: yaml.Node, key: str, problems: _Problems) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) of a YAML mapping, in file order; duplicates and non-mappings are problems."""
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, key, "must be a mapping of names to values")
        return []
    entries, seen = [], set()
    for key_node, value_node in node.value:
        name = str(_value(key_node))
        if name in seen:
            problems.add(key_node, f"{key}.{name}" if key else name, "is given twice")
        seen.add(name)
        entries.append((name, key_node, value_node))
    return entries


def _compose(source: Path) -> yaml.Node:
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise GridFileError([f"{source}: cannot read the grid file ({exc.strerror})"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise GridFileError([f"{source}:{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from exc
    if node is None:
        raise GridFileError([f"{source}:1: the grid file is empty; it needs at least 'command'"])
    return node


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse has no public listing of a parser's actions; _actions is the stable way every introspection tool uses
    for action in parser._actions:
        if action.nargs == argparse.PARSER and isinstance(action.choices, dict):
            return action.choices
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        flag: action for action in parser._actions for flag in action.option_strings if flag.startswith("--") and flag != "--help"
    }


def _command_parser(
    cli: argparse.ArgumentParser, words: list[str], node: yaml.Node, problems: _Problems
) -> argparse.ArgumentParser | None:
    """The argparse parser of ``slmlab WORDS`` inside the real command line ``cli``, so a grid stays in step with it."""
    parser = cli
    for depth, word in enumerate(words):
        commands = _subcommands(parser)
        if word not in commands or (depth == 0 and word == "grid"):
            known = ", ".join(name for name in commands if name != "grid")
            problems.add(node, "command", f"unknown command 'slmlab {' '.join(words[: depth + 1])}' (commands: {known})")
            return None
        parser = commands[word]
    verbs = _subcommands(parser)
    if verbs:
        problems.add(node, "command", f"'slmlab {' '.join(words)}' needs one of: {', '.join(verbs)}")
        return None
    required = [action.dest for action in parser._actions if not action.option_strings and action.required]
    if required:
        problems.add(
            node,
            "command",
            f"'slmlab {' '.join(words)}' takes positional {', '.join(required)}, "
            "which a grid cannot set; use a command with options only",
        )
        return None
    return parser


def _known_model(value: str, command: str) -> bool:
    if value in REGISTRY or value in model_words(command) or looks_like_hub_id(value):
        return True
    return Path(value).expanduser().exists() or (project_root() / value).exists()


def _known_task(value: str) -> bool:
    if value in SPLITS or value in TASKS:
        return True
    return Path(value).suffix in (".json", ".jsonl") and any(p.is_file() for p in (Path(value), project_root() / value))


def _registry_problem(flag: str, text: str, command: str) -> str | None:
    """Why ``text`` is not a model or task the option accepts, or None."""
    if flag in MODEL_OPTIONS and not model_is_folder(command) and not _known_model(text, command):
        return f"unknown model '{text}' (registry: {', '.join(REGISTRY)}; or a Hugging Face id 'org/name' or a local folder)"
    if flag in TASK_OPTIONS.get(command, ()) and not _known_task(text):
        return f"unknown task '{text}' (tasks: {', '.join(dict.fromkeys([*SPLITS, *TASKS]))}; or a JSON/JSONL task file)"
    return None


def _switch_args(flag: str, action: argparse.Action, value: object) -> list[str] | str:
    either_way = isinstance(action, argparse.BooleanOptionalAction)
    if not isinstance(value, bool) or not (either_way or isinstance(action.const, bool)):
        return "is a switch: write true or false"
    if either_way:
        return [flag if value else "--no-" + flag[2:]]
    return [flag] if value == action.const else []


def _check_text(action: argparse.Action, text: str) -> str | None:
    """Why argparse would refuse ``text`` for ``action`` (its type and choices), or None."""
    try:
        converted = action.type(text) if callable(action.type) else text
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return f"'{text}' is not a valid {getattr(action.type, '__name__', 'value')}"
    if action.choices is not None and converted not in action.choices:
        return f"'{text}' is not one of {', '.join(map(str, action.choices))}"
    return None


def _option_args(flag: str, action: argparse.Action, value: object, command: str) -> list[str] | str:
    """The command-line words for ``value``, or why it cannot be passed."""
    if action.nargs == 0:
        return _switch_args(flag, action, value)
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1
    values = value if isinstance(value, list) and many else [value]
    if isinstance(value, list) and not many:
        return "takes one value, not a list"
    texts = []
    for item in values:
        if item is None or isinstance(item, (dict, list)):
            return "needs a plain value (number, word or path)"
        text = _text(item)
        why = _check_text(action, text) or _registry_problem(flag, text, command)
        if why:
            return why
        texts.append(text)
    if len(texts) == 1 and texts[0].startswith("-"):
        return [f"{flag}={texts[0]}"]
    return [flag, *texts]


def _text(value: object) -> str:
    """A YAML value as a command-line word: booleans as true/false, numbers as Python writes them."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)


def _flag_of(name: str, options: dict[str, argparse.Action]) -> str | None:
    flag = "--" + name.replace("_", "-")
    return flag if flag in options else None


class _GridFile:
    """The checked contents of one grid file, before it becomes cells."""

    def __init__(self, source: Path, cli: argparse.ArgumentParser):
        self.source, self.cli, self.problems = source, cli, _Problems(source)
        self.name, self.words, self.resources, self.done = source.stem, [], Resources(), None
        self.fixed: list[list[str]] = []
        self.sweep: list[tuple[str, list[tuple[str, list[str]]]]] = []  # (option, [(label, words), ...])
        self.output_flag = ""

    def read(self) -> _GridFile:
        root = _compose(self.source)
        entries = {name: (key_node, value_node) for name, key_node, value_node in _mapping(root, "", self.problems)}
        for name, (key_node, _) in entries.items():
            if name not in TOP_KEYS:
                self.problems.add(key_node, name, f"unknown key (keys: {', '.join(TOP_KEYS)})")
        if "command" not in entries:
            self.problems.add(root, "command", "missing: name the slmlab command each cell runs")
            self.problems.raise_any()
        parser = self._read_command(entries["command"][1])
        if parser is None:
            self.problems.raise_any()
        self._read_simple(entries)
        options = _options(parser)
        self.output_flag = next((flag for flag in OUTPUT_OPTIONS if flag in options), "")
        if not self.output_flag:
            self.problems.add(
                entries["command"][1],
                "command",
                f"'slmlab {' '.join(self.words)}' has no output option ({', '.join(OUTPUT_OPTIONS)})",
            )
        self._read_options(entries, options)
        self.problems.raise_any()
        return self

    def _read_command(self, node: yaml.Node) -> argparse.ArgumentParser | None:
        value = _value(node)
        words = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        if not words or not all(isinstance(word, str) for word in words):
            self.problems.add(node, "command", "must be an slmlab command such as 'data', 'train' or 'ace run'")
            return None
        self.words = words
        return _command_parser(self.cli, words, node, self.problems)

    def _read_simple(self, entries: dict) -> None:
        if "name" in entries:
            node = entries["name"][1]
            name = _value(node)
            if not isinstance(name, str) or not name or _SAFE.search(name):
                self.problems.add(node, "name", "must be a folder name (letters, digits, '.', '_', '-')")
            else:
                self.name = name
        if "done" in entries:
            done = _value(entries["done"][1])
            if not isinstance(done, str) or not done or Path(done).is_absolute() or ".." in Path(done).parts:
                self.problems.add(entries["done"][1], "done", "must be a file name relative to the cell's output folder")
            else:
                self.done = done
        if "resources" in entries:
            self._read_resources(entries["resources"][1])

    def _read_resources(self, node: yaml.Node) -> None:
        values = {}
        for name, key_node, value_node in _mapping(node, "resources", self.problems):
            value = _value(value_node)
            if name not in RESOURCE_KEYS:
                self.problems.add(key_node, f"resources.{name}", f"unknown key (keys: {', '.join(RESOURCE_KEYS)})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                self.problems.add(value_node, f"resources.{name}", "must be a number of 0 or more")
            else:
                values[name] = float(value)
        self.resources = Resources(**values)

    def _read_options(self, entries: dict, options: dict[str, argparse.Action]) -> None:
        command = " ".join(self.words)
        fixed = [
            (f"fixed.{name}", name, key_node, value_node)
            for name, key_node, value_node in (
                _mapping(entries["fixed"][1], "fixed", self.problems) if "fixed" in entries else []
            )
        ]
        if "seed" in entries:
            fixed.insert(0, ("seed", "seed", *entries["seed"]))
        sweep = _mapping(entries["sweep"][1], "sweep", self.problems) if "sweep" in entries else []
        swept = {_flag_of(name, options) for name, _, _ in sweep} - {None}
        for key, name, key_node, value_node in fixed:
            flag = self._flag(name, key, key_node, options, swept)
            if flag:
                found = _option_args(flag, options[flag], _value(value_node), command)
                self._keep(found, key, value_node, self.fixed.append)
        for name, key_node, value_node in sweep:
            flag = self._flag(name, f"sweep.{name}", key_node, options, set())
            if flag:
                self._read_sweep_values(name, flag, options[flag], value_node, command)

    def _flag(self, name: str, key: str, node: yaml.Node, options: dict, swept: set) -> str | None:
        flag = _flag_of(name, options)
        if flag is None:
            known = ", ".join(sorted(flag[2:] for flag in options if flag not in OUTPUT_OPTIONS))
            self.problems.add(node, key, f"unknown option for 'slmlab {' '.join(self.words)}' (options: {known})")
        elif flag in OUTPUT_OPTIONS and flag == self.output_flag:
            self.problems.add(node, key, f"{flag} is set by the grid: each cell writes to its own folder")
        elif flag in swept:
            self.problems.add(node, key, "is also in sweep; give it in one place")
        else:
            return flag
        return None

    def _read_sweep_values(self, name: str, flag: str, action: argparse.Action, node: yaml.Node, command: str) -> None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problems.add(node, f"sweep.{name}", "must be a non-empty list of values")
            return
        values, labels = [], set()
        for item in node.value:
            value = _value(item)
            label = _SAFE.sub("_", _text(value) if not isinstance(value, list) else "+".join(map(_text, value)))
            if label in labels:
                self.problems.add(item, f"sweep.{name}", f"value '{value}' is given twice")
            labels.add(label)
            found = _option_args(flag, action, value, command)
            self._keep(found, f"sweep.{name}", item, lambda words, label=label: values.append((label, words)))
        self.sweep.append((name, values))

    def _keep(self, found: list[str] | str, key: str, node: yaml.Node, keep: Callable[[list[str]], None]) -> None:
        if isinstance(found, str):
            self.problems.add(node, key, found)
        else:
            keep(found)


def load_grid(path: str | Path, cli: argparse.ArgumentParser, root: str | Path | None = None) -> Grid:
    """Read and check a grid file against the command line ``cli`` (``slmlab.cli.build_parser()``) and plan its
    cells (nothing runs); raises :class:`GridFileError`.

    ``root`` holds one folder per grid (default ``results/grid`` of the artifacts tree)."""
    spec = _GridFile(Path(path), cli).read()
    folder = Path(root or grids_path(artifacts_root())).expanduser().resolve() / spec.name
    names = [name for name, _ in spec.sweep]
    cells = []
    for point in itertools.product(*(values for _, values in spec.sweep)):
        cell_id = ",".join(f"{name}={label}" for name, (label, _) in zip(names, point)) or "cell"
        args = [*spec.words, *itertools.chain(*spec.fixed), *itertools.chain(*(words for _, words in point))]
        cell_folder = folder / cell_id
        cells.append(
            Cell(
                cell_id,
                dict(zip(names, (label for label, _ in point))),
                (*args, spec.output_flag, str(cell_folder)),
                cell_folder,
                spec.done,
            )
        )
    return Grid(spec.name, Path(path), tuple(spec.words), spec.resources, tuple(cells), folder)


def describe(grid: Grid, rerun: bool = False) -> list[str]:
    """One line per cell for ``--dry-run``: run or skip, the id and the command line."""
    lines = [
        f"grid {grid.name}: {len(grid.cells)} cells of 'slmlab {' '.join(grid.command)}' from {grid.source}, "
        f"each asking {grid.resources.num_cpus:g} CPU, {grid.resources.num_gpus:g} GPU; results in {grid.folder}"
    ]
    for cell in grid.cells:
        state = "skip" if cell.finished() and not rerun else "run "
        lines.append(f"  {state} {cell.id}: {cell.command_line}")
    return lines


# --- running ----------------------------------------------------------------------------------------------
def run_cell(job: CellJob) -> CellResult:
    """Run one cell's command in a subprocess; write ``cell.json`` and ``cell.log`` into its folder."""
    cell = job.cell
    cell.folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "slmlab", *cell.args],
            capture_output=True,
            text=True,
            cwd=job.cwd if Path(job.cwd).is_dir() else None,
            env={**os.environ, **job.env},
            check=False,
        )
        returncode, out, err = done.returncode, done.stdout, done.stderr
    except OSError as exc:
        returncode, out, err = -1, "", f"could not start the command: {exc}"
    seconds = round(time.perf_counter() - started, 3)
    error = err.splitlines()[-STDERR_LINES:] if returncode else []
    if returncode == 0 and cell.done_file and not (cell.folder / cell.done_file).is_file():
        error = [f"the command succeeded but wrote no {cell.done_file}"]
    result = CellResult(
        cell.id, "failed" if error or returncode else "ok", cell.command_line, returncode, seconds, error, socket.gethostname()
    )
    atomic_write_text(cell.folder / CELL_LOG_FILE, out + err)
    atomic_write_json(cell.record_path, asdict(result))
    return result


def _lost(job: CellJob, problem: BaseException) -> CellResult:
    """The record of a cell whose Ray task itself failed (a worker that died, a node that left)."""
    lines = [line for line in str(problem).splitlines() if line.strip()] or [type(problem).__name__]
    result = CellResult(job.cell.id, "failed", job.cell.command_line, None, 0.0, lines[-STDERR_LINES:])
    with contextlib.suppress(OSError):  # the folder lives on another machine; the grid summary still has the cell
        atomic_write_json(job.cell.record_path, asdict(result))
    return result


@dataclass(frozen=True)
class RayTarget:
    """A Ray address that answered, and whether its cluster asked for an authentication token."""

    address: str
    token: bool = False


def check_address(address: str, timeout: float) -> RayTarget:
    """Make sure a Ray cluster answers at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) within ``timeout``
    seconds; raises :class:`RayClusterError` with one sentence when nothing does. ``auto`` is passed through."""
    if address == "auto":
        return RayTarget(address)
    client = address.startswith("ray://")
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = target, str(RAY_CLIENT_PORT if client else RAY_DEFAULT_PORT)
    if not host or not port.isdigit():
        raise RayClusterError(f"'{address}' is not a Ray address: write HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT.")
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
        reply = _ray_reply(f"{host}:{port}", client, max(timeout - (time.monotonic() - started), 1.0))
        if reply is not None:
            return RayTarget(address, token=reply == "token")
        raise RayClusterError(
            f"Something answers at {host}:{port} but it is not a Ray cluster (no Ray reply within "
            f"{timeout:g} s); give the head's address as `ray start --head` printed it, or drop "
            "--address for a local run."
        )
    except TimeoutError:
        reason = f"timed out after {timeout:g} s"
    except ConnectionRefusedError:
        reason = "connection refused"
    except socket.gaierror:
        reason = "unknown host"
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
    raise RayClusterError(
        f"No Ray cluster answers at {host}:{port} ({reason}); start one with `ray start --head` "
        "there, or drop --address for a local run."
    )


def _import_ray():
    """The ``ray`` module, imported only when a grid runs on it (``slmlab`` itself starts without Ray)."""
    try:
        import ray
    except ImportError as exc:
        raise RayClusterError(
            "Ray is not installed here: `pip install 'ray>=2.40'` (the dev extra has it), or run the grid with --serial."
        ) from exc
    return ray


def _ray_reply(target: str, client: bool, timeout: float) -> str | None:
    """How a Ray GCS (or, ``client``, a Ray client server) at ``target`` replies within ``timeout`` seconds: "open",
    "token" (it wants an authentication token) or None (no Ray there).

    A TCP connect is not enough: ``ray.init`` retries for minutes against a port that accepts connections but is no
    Ray (another service, a proxy), so one RPC with a deadline decides."""
    try:
        import grpc  # installed with ray; asked directly so that ray itself is imported after the auth mode is known
    except ImportError:
        _import_ray()  # says how to install Ray
        raise
    not_ray = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    with grpc.insecure_channel(target) as channel:
        try:  # an empty request is a valid protobuf message of every type
            channel.unary_unary(RAY_CLIENT_PING if client else RAY_GCS_PING)(b"", timeout=timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return "token"
            return None if error.code() in not_ray else "open"
    return "open"


def _start_ray(options: RunOptions, target: RayTarget | None) -> None:
    import logging

    ray = _import_ray()
    try:
        if target is not None:
            ray.init(address=target.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(num_cpus=options.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for the same situation
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        token = (
            f" (the cluster wants a token: set {RAY_AUTH_ENV}=token and copy the head's ~/.ray/auth_token)"
            if target is not None and target.token
            else ""
        )
        raise RayClusterError(f"Could not start {where}: {first}{token}") from exc


def _check_fits(resources: Resources) -> None:
    """Refuse a grid whose cells ask more than the whole cluster has: Ray would wait for them forever."""
    ray = _import_ray()

    have = ray.cluster_resources()
    for name, asked in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus)):
        if asked > have.get(name, 0.0):
            raise RayClusterError(
                f"Each cell asks {asked:g} {name} but the Ray cluster has {have.get(name, 0.0):g}; "
                f"lower resources.num_{name.lower()}s in the grid file or add machines."
            )


def _run_on_ray(
    jobs: Sequence[CellJob],
    resources: Resources,
    options: RunOptions,
    target: RayTarget | None,
    report: Callable[[CellResult], None],
) -> None:
    if target is not None and target.token:
        # `ray start --head` turns token authentication on; a driver sends its token only when told so before import
        os.environ.setdefault(RAY_AUTH_ENV, "token")
    ray = _import_ray()

    started_here = not ray.is_initialized()
    if started_here:
        _start_ray(options, target)
    try:
        _check_fits(resources)
        task = ray.remote(run_cell).options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                report(ray.get(ready[0]))
            except Exception as problem:  # a task that died: the other cells go on
                report(_lost(job, problem))
    finally:
        if started_here:
            ray.shutdown()


def _jobs(cells: Iterable[Cell]) -> list[CellJob]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    return [CellJob(cell, env, str(Path.cwd())) for cell in cells]


def _progress(total: int, printer: Callable[[str], None]) -> Callable[[CellResult], None]:
    count = itertools.count(1)

    def report(result: CellResult) -> None:
        line = f"[{next(count)}/{total}] {result.status:6} {result.id} ({result.seconds:.1f} s)"
        printer(line + (f"\n    {result.reason}" if result.status == "failed" else ""))

    return report


def run_grid(grid: Grid, options: RunOptions = RunOptions(), printer: Callable[[str], None] = print) -> list[CellResult]:
    """Run every cell not yet finished (serially or as Ray tasks), print a line as each ends, and write
    ``grid.json``; returns every cell's result in the grid's order (finished ones as ``skipped``)."""
    if options.serial and options.address:
        raise RayClusterError("--serial runs without Ray; drop --address or --serial.")
    target = check_address(options.address, options.connect_timeout) if options.address else None
    results: dict[str, CellResult] = {}
    todo = [cell for cell in grid.cells if options.rerun or not cell.finished()]
    running = {cell.id for cell in todo}
    for cell in grid.cells:
        if cell.id not in running:
            results[cell.id] = CellResult(cell.id, "skipped", cell.command_line)
    report = _progress(len(todo), printer)

    def keep(result: CellResult) -> None:
        results[result.id] = result
        report(result)

    if options.serial:
        for job in _jobs(todo):
            keep(run_cell(job))
    elif todo:
        _run_on_ray(_jobs(todo), grid.resources, options, target, keep)
    else:
        printer(f"all {len(grid.cells)} cells finished earlier (--rerun runs them again)")
    ordered = [results[cell.id] for cell in grid.cells]
    cells = [{**asdict(result), "values": cell.values} for result, cell in zip(ordered, grid.cells)]
    atomic_write_json(
        grid.folder / GRID_SUMMARY_FILE,
        {"name": grid.name, "file": str(grid.source), "command": " ".join(grid.command), "cells": cells},
    )
    return ordered


def grid_table(results: Sequence[CellResult]) -> str:
    """A plain table: one row per cell with its status, seconds and, for a failed cell, the reason."""
    width = max((len(result.id) for result in results), default=4)
    rows = [f"{'cell':{width}}  status   seconds  error"]
    for result in results:
        seconds = f"{result.seconds:7.1f}" if result.status != "skipped" else "       "
        rows.append(f"{result.id:{width}}  {result.status:7}  {seconds}  {result.reason}".rstrip())
    return "\n".join(rows)
