"""``slmlab grid FILE.yaml``: run a grid of experiment cells (any slmlab command over a parameter sweep) as Ray
tasks on a local Ray or an existing cluster, or serially; ``--dry-run`` lists the cells. See :mod:`slmlab.grid`."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmlab.grid import RunOptions, describe, grid_table, load_grid, run_grid
from slmlab.spec import GRID_SUMMARY_FILE, grids_path

DEFAULT = " (default: %(default)s)"  # appended to a help text: argparse fills in the option's default


def run_grid_command(args: argparse.Namespace) -> int:
    """Run (or with ``--dry-run`` list) the grid file ``args.file``, checked against the command line that
    ``args.cli_parser()`` builds (``slmlab.cli`` sets it on every command)."""
    grid = load_grid(args.file, args.cli_parser(), root=args.root)
    if args.dry_run:
        print("\n".join(describe(grid, rerun=args.rerun)))
        return 0
    options = RunOptions(
        address=args.address, connect_timeout=args.connect_timeout, workers=args.workers, serial=args.serial, rerun=args.rerun
    )
    results = run_grid(grid, options)
    print(grid_table(results))
    print(f"grid summary: {grid.folder / GRID_SUMMARY_FILE}")
    return 1 if any(result.status == "failed" for result in results) else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def add_grid_options(grid: argparse.ArgumentParser) -> None:
    """The options of ``slmlab grid``, on ``grid`` (a command that runs a grid file: ``slmlab grid``, ``slmlab ace grid``)."""
    defaults = RunOptions()
    grid.add_argument("file", help="grid file, e.g. grids/data_seeds.yaml")
    grid.add_argument("--dry-run", action="store_true", help="list the cells, their command lines and skip/run; start nothing")
    grid.add_argument(
        "--address",
        default=defaults.address,
        metavar="HOST:PORT",
        help="a running Ray cluster (HOST:PORT or ray://HOST:PORT; default: start a local Ray)",
    )
    grid.add_argument(
        "--connect-timeout",
        type=float,
        default=defaults.connect_timeout,
        help="seconds to wait for --address to answer" + DEFAULT,
    )
    grid.add_argument("--workers", type=_positive, default=defaults.workers, help="CPUs of the local Ray (default: all)")
    grid.add_argument("--serial", action="store_true", help="run the cells one after another here, without Ray")
    grid.add_argument("--rerun", action="store_true", help="run finished cells again")
    shown = grids_path(Path("<artifacts>")).as_posix()
    grid.add_argument("--root", default=None, help=f"folder of the grids' results (default: {shown})")
    grid.set_defaults(run=run_grid_command)


def add_grid_command(commands) -> None:
    """Register ``slmlab grid`` on the main parser's subcommands."""
    add_grid_options(commands.add_parser("grid", help="run a YAML grid of cells (command × parameter sweep) as Ray tasks"))
