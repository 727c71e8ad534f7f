"""The house in numbers: lines, modules, function-level slmlab imports, artifact names written outside the specs and
the longest functions of ``lib/slmlab`` in a checkout (default: this one), for before/after comparisons of a clean-up.

Artifact names are the ones this checkout's specs declare, so an older checkout is measured by today's rule.
Usage: ``python scripts/house_numbers.py [--root OTHER_CHECKOUT] [--longest 5]``
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

import test_architecture as rules  # noqa: E402  (the architecture test's own readers: one definition of each rule)


def modules(package: Path) -> dict[str, Path]:
    return {
        ".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(package.rglob("*.py"))
    }


def function_lengths(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.end_lineno - node.lineno + 1, f"{path.name}:{node.name}")
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def lazy_imports(found: dict[str, Path]) -> int:
    count = 0
    for name, path in found.items():
        lines = {int(item.source.rsplit(":", 1)[1]) for item in rules.imports_of(path, name) if item.in_function}
        count += len(lines)
    return count


def house(root: Path, longest: int) -> dict:
    package = root / "lib" / "slmlab"
    found = modules(package)
    names = rules.declared_names()
    literals = [
        line
        for name, path in found.items()
        if not rules.is_spec(name) and name not in rules.RULE_FREE
        for line in rules.literal_artifacts(path, names)
    ]
    lengths = sorted((length for path in found.values() for length in function_lengths(path)), reverse=True)
    return {
        "lines": sum(len(path.read_text(encoding="utf-8").splitlines()) for path in found.values()),
        "modules": len(found),
        "function-level slmlab imports": lazy_imports(found),
        "artifact names or paths written outside specs": len(literals),
        "longest functions": [f"{name} ({length} lines)" for length, name in lengths[:longest]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to measure (default: this one)")
    parser.add_argument("--longest", type=int, default=5, help="how many of the longest functions to list")
    args = parser.parse_args()
    print(json.dumps(house(args.root.resolve(), args.longest), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
