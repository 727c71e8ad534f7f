"""``slmlab demo [lora|ace|mcts|lm|rl|all]``: chapter 09's before/after of each lever, played from the artifacts on disk.

Exit status: 0 when every lever asked for was shown; for one lever whose files are missing or unreadable, 1 (its
panel names the command that makes them). ``all`` always exits 0: a lever not run yet is a panel, and the rest play.
"""

from __future__ import annotations

import argparse
import sys

from slmlab.report.demo import LEVERS, SHOWN, DemoConfig, play_demo, save_recording
from slmlab.settings import artifacts_root, quick_mode

ALL = "all"
DEFAULTS = DemoConfig()


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    quick = quick_mode(args.quick)  # --quick, or SLMLAB_QUICK
    width = args.width or (DEFAULTS.record_width if args.record else None)
    console = Console(record=bool(args.record), width=width)
    config = DemoConfig(examples=args.examples, pause=args.pause)
    levers = LEVERS if args.lever == ALL else (args.lever,)
    shown = play_demo(console, levers, artifacts_root(quick), config, quick=quick)
    if args.record:
        console.print(f"recorded: {save_recording(console, args.record)}", style="dim")
    return 0 if args.lever == ALL or all(status == SHOWN for status in shown.values()) else 1


def add_demo_command(commands) -> None:
    """``slmlab demo`` under the top-level parser's subcommands."""
    demo = commands.add_parser("demo", help="play each lever's before/after from the trained artifacts (no training)")
    demo.add_argument("lever", nargs="?", default=ALL, choices=(*LEVERS, ALL), help="which lever (default: %(default)s)")
    demo.add_argument(
        "--quick", action="store_true", default=None, help="play the quick-mode artifacts tree (quick/); also SLMLAB_QUICK=1"
    )
    demo.add_argument(
        "--pause",
        type=float,
        default=DEFAULTS.pause,
        metavar="SECONDS",
        help=f"wait between steps, for recording (default: {DEFAULTS.terminal_pause} on a terminal, else 0)",
    )
    demo.add_argument("--examples", type=int, default=DEFAULTS.examples, help="examples per lever (default: %(default)s)")
    demo.add_argument("--record", default=None, metavar="FILE.svg", help="also save the screen as an SVG file")
    demo.add_argument(
        "--width",
        type=int,
        default=None,
        help=f"console width in characters (default: the terminal's; {DEFAULTS.record_width} with --record)",
    )
    demo.set_defaults(run=_demo)


def main(argv: list[str] | None = None) -> int:
    """``python -m slmlab.report.demo_cli``: the ``demo`` command on its own."""
    parser = argparse.ArgumentParser(prog="slmlab")
    add_demo_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
