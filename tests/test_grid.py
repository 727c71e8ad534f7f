"""``slmlab grid``: the cells of a grid file, its checks (file, line and key of every problem), a Ray run that
equals the serial one, failed and finished cells, and a Ray address that does not answer."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from slmlab.cli import build_parser
from slmlab.grid import CellResult, GridFileError, RayClusterError, RunOptions, check_address, load_grid, run_grid

ROOT = Path(__file__).resolve().parents[1]
CLI = build_parser()  # a grid file is checked against the real command line
RECORDS = ("cell.json", "cell.log", "grid.json")  # the grid's own records (their times differ between runs)


def grid_file(folder: Path, text: str, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(*argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["grid", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.run(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 workers for the module; its socket folder kept short (Ray's path length limit)."""
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


DATA_GRID = """\
name: seeds
command: data
fixed:
  patterns: {patterns}
sweep:
  seed: [0, 1]
  variants: [1, 2]
done: manifest.json
"""


def test_dry_run_lists_the_cartesian_product_in_file_order(tmp_path):
    path = grid_file(tmp_path, DATA_GRID.format(patterns=ROOT / "patterns"))
    code, out = run_cli(str(path), "--dry-run", "--root", str(tmp_path / "results"))
    lines = out.splitlines()
    assert code == 0 and "4 cells of 'slmlab data'" in lines[0]
    cells = [line.split(":")[0].split() for line in lines[1:]]
    assert cells == [
        ["run", "seed=0,variants=1"],
        ["run", "seed=0,variants=2"],
        ["run", "seed=1,variants=1"],
        ["run", "seed=1,variants=2"],
    ]
    assert f"--seed 1 --variants 2 --out {tmp_path / 'results' / 'seeds' / 'seed=1,variants=2'}" in lines[4]
    assert not (tmp_path / "results").exists()


def test_cells_write_under_the_artifacts_tree_by_default(tmp_path):
    from slmlab.settings import artifacts_root

    grid = load_grid(grid_file(tmp_path, DATA_GRID.format(patterns="patterns")), CLI)
    assert grid.folder == artifacts_root() / "results" / "grid" / "seeds"
    assert [cell.folder.parent for cell in grid.cells] == [grid.folder] * 4


@pytest.mark.parametrize("path", sorted((ROOT / "grids").glob("*.yaml")), ids=lambda path: path.name)
def test_the_committed_grids_fit_the_command_line(path):
    assert load_grid(path, CLI).cells


BAD = [
    ("command: data\ncolour: blue\n", 2, "colour", "unknown key"),
    ("command: train\nsweep:\n  rank: [4, 8]\n  flavour: [a]\n", 4, "sweep.flavour", "unknown option for 'slmlab train'"),
    (
        "command: ace run\nsweep:\n  model:\n    - smollm2-135m-instruct\n    - gpt-17\n",
        5,
        "sweep.model",
        "unknown model 'gpt-17'",
    ),
    ("command: ace run\nfixed:\n  task: astrology\n", 3, "fixed.task", "unknown task 'astrology'"),
    ("command: ace run\nsweep:\n  mode: [baseline, sideways]\n", 3, "sweep.mode", "'sideways' is not one of"),
    ("command: data\nfixed:\n  out: here\n", 3, "fixed.out", "--out is set by the grid"),
    ("command: ace\n", 1, "command", "'slmlab ace' needs one of"),
    ("command: data\nresources: {num_gpus: -1}\n", 2, "resources.num_gpus", "must be a number"),
]


@pytest.mark.parametrize("text, line, key, why", BAD, ids=[case[2] + ":" + case[3].split()[0] for case in BAD])
def test_a_bad_grid_is_refused_with_file_line_and_key(tmp_path, text, line, key, why):
    path = grid_file(tmp_path, text)
    with pytest.raises(GridFileError) as refused:
        load_grid(path, CLI, root=tmp_path / "results")
    assert f"{path}:{line}: {key}: {why}" in str(refused.value)
    assert not (tmp_path / "results").exists()


def test_every_problem_of_a_file_is_listed_at_once(tmp_path):
    path = grid_file(tmp_path, "command: ace run\ncolour: blue\nsweep:\n  task: [finance, astrology]\n  flavour: [1]\n")
    with pytest.raises(GridFileError) as refused:
        load_grid(path, CLI)
    assert [problem.split(": ")[0] for problem in refused.value.problems] == [f"{path}:2", f"{path}:4", f"{path}:5"]


def produced(folder: Path) -> dict[str, bytes]:
    """Every file the cells' command wrote under ``folder`` (the grid's records aside), by relative name."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in RECORDS
    }


def test_a_ray_run_equals_a_serial_run(tmp_path, local_ray):
    text = DATA_GRID.format(patterns=ROOT / "patterns").replace("variants: [1, 2]", "variants: [1]")
    path = grid_file(tmp_path, text)
    serial = run_grid(load_grid(path, CLI, root=tmp_path / "serial"), RunOptions(serial=True), printer=lambda line: None)
    lines = []
    on_ray = run_grid(load_grid(path, CLI, root=tmp_path / "ray"), RunOptions(workers=2), printer=lines.append)
    assert [r.status for r in serial] == [r.status for r in on_ray] == ["ok", "ok"]
    assert len(lines) == 2 and all(line.startswith(("[1/2] ok", "[2/2] ok")) for line in lines)
    files = produced(tmp_path / "ray" / "seeds")
    assert files == produced(tmp_path / "serial" / "seeds")
    assert {"seed=0,variants=1/train.jsonl", "seed=1,variants=1/manifest.json"} <= set(files)
    assert files["seed=0,variants=1/train.jsonl"] != files["seed=1,variants=1/train.jsonl"]


def test_a_failed_cell_is_reported_while_the_others_finish_and_finished_cells_are_skipped(tmp_path, local_ray):
    text = f"name: broken\ncommand: data\nsweep:\n  patterns: [{ROOT / 'patterns'}, {tmp_path / 'no-such-folder'}]\n"
    path, root = grid_file(tmp_path, text), str(tmp_path / "results")
    code, out = run_cli(str(path), "--root", root)
    assert code == 1
    ok, failed = json.loads((tmp_path / "results" / "broken" / "grid.json").read_text())["cells"]
    assert ok["status"] == "ok" and ok["returncode"] == 0 and ok["error"] == []
    assert failed["status"] == "failed" and failed["returncode"] == 2
    assert "no-such-folder" in failed["error"][-1] and "does not exist" in failed["error"][-1]
    assert f"\n    {failed['error'][-1]}\n" in out  # the progress line of the failed cell, then its reason
    assert (tmp_path / "results" / "broken" / ok["id"] / "manifest.json").is_file()
    assert failed["values"] == {"patterns": failed["id"].partition("=")[2]}

    again, out = run_cli(str(path), "--root", root, "--dry-run")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["skip", "run"]
    code, out = run_cli(str(path), "--root", root, "--serial")
    records = json.loads((tmp_path / "results" / "broken" / "grid.json").read_text())["cells"]
    assert code == 1 and [record["status"] for record in records] == ["skipped", "failed"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_address_where_nothing_listens_is_one_sentence(tmp_path):
    port = closed_port()
    path = grid_file(tmp_path, DATA_GRID.format(patterns="patterns"))
    started = time.monotonic()
    with pytest.raises(RayClusterError) as refused:
        run_cli(str(path), "--root", str(tmp_path), "--address", f"127.0.0.1:{port}", "--connect-timeout", "2")
    assert time.monotonic() - started < 2
    message = str(refused.value)
    assert message.startswith(f"No Ray cluster answers at 127.0.0.1:{port} (connection refused)")
    assert "ray start --head" in message and "\n" not in message
    assert not (tmp_path / "seeds").exists()


def test_an_address_that_is_not_ray_gives_up_within_the_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        started = time.monotonic()
        with pytest.raises(RayClusterError, match="is not a Ray cluster"):
            check_address(f"127.0.0.1:{listener.getsockname()[1]}", timeout=1)
    assert time.monotonic() - started < 3


def test_a_running_cluster_answers(local_ray):
    address = local_ray.get_runtime_context().gcs_address
    assert check_address(address, timeout=5).address == address


def test_a_bad_address_is_named():
    with pytest.raises(RayClusterError, match="is not a Ray address"):
        check_address("head:port", timeout=1)


def test_a_skipped_cell_has_no_reason():
    assert CellResult("seed=0", "skipped", "slmlab data").reason == ""


def test_cells_asking_more_than_the_cluster_has_are_refused_before_they_start(tmp_path, local_ray):
    text = DATA_GRID.format(patterns=ROOT / "patterns").replace("command: data", "command: data\nresources: {num_cpus: 3}")
    grid = load_grid(grid_file(tmp_path, text), CLI, root=tmp_path)
    with pytest.raises(RayClusterError, match="Each cell asks 3 CPU but the Ray cluster has 2"):
        run_grid(grid, RunOptions())
    assert not any(cell.folder.exists() for cell in grid.cells)
