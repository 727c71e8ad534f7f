"""Fingerprints of generated programs: an AST-level normal form (no comments, docstrings or formatting, canonical
local names) hashed with sha256, and a set that counts how often the same attempt comes back.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field

SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
DOCSTRING_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if (
            isinstance(node, DOCSTRING_OWNERS)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
            and isinstance(node.body[0].value.value, str)
        ):
            node.body = node.body[1:] or [ast.Pass()]


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """The nodes of a function's body, without descending into nested functions, lambdas or classes."""
    nodes, stack = [], list(reversed(function.body))
    while stack:
        node = stack.pop()
        nodes.append(node)
        if not isinstance(node, SCOPES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return nodes


class _LocalRenamer(ast.NodeTransformer):
    """Renames each function's parameters and assigned locals to ``_v0, _v1, ...`` in order of appearance.

    Numbering is global over the module so a nested function's names never collide with the names it sees
    from an enclosing one; module-level names, globals, attributes and keywords keep their spelling.
    """

    def __init__(self) -> None:
        self.scopes: list[dict[str, str]] = []
        self.counter = 0

    def _scope(self, names: list[str]) -> dict[str, str]:
        mapping = {}
        for name in dict.fromkeys(names):
            mapping[name] = f"_v{self.counter}"
            self.counter += 1
        return mapping

    def _rename_arguments(self, arguments: ast.arguments, mapping: dict[str, str]) -> None:
        for argument in ast.walk(arguments):
            if isinstance(argument, ast.arg):
                argument.arg = mapping.get(argument.arg, argument.arg)

    @staticmethod
    def _parameters(arguments: ast.arguments) -> list[str]:
        names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
        return names + [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]

    def _locals(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
        names, declared = self._parameters(node.args), set()
        for inner in _own_nodes(node):
            if isinstance(inner, (ast.Global, ast.Nonlocal)):
                declared.update(inner.names)
            elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                names.append(inner.id)
        return [name for name in dict.fromkeys(names) if name not in declared]

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.decorator_list = [self.visit(decorator) for decorator in node.decorator_list]
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        mapping = self._scope(self._locals(node))
        self._rename_arguments(node.args, mapping)
        self.scopes.append(mapping)
        node.body = [self.visit(statement) for statement in node.body]
        self.scopes.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        mapping = self._scope(self._parameters(node.args))
        self._rename_arguments(node.args, mapping)
        self.scopes.append(mapping)
        node.body = self.visit(node.body)
        self.scopes.pop()
        return node

    def visit_Name(self, node: ast.Name) -> ast.Name:
        for mapping in reversed(self.scopes):
            if node.id in mapping:
                node.id = mapping[node.id]
                break
        return node


def normalize_code(code: str, rename_locals: bool = True) -> str:
    """The canonical text of a program: ``ast.unparse`` without docstrings (comments vanish with the AST) and,
    with ``rename_locals``, with canonical local names; code that does not parse is whitespace-normalized."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return " ".join(code.split())
    _strip_docstrings(tree)
    if rename_locals:
        tree = _LocalRenamer().visit(tree)
    return ast.unparse(tree)


def fingerprint(code: str, rename_locals: bool = True) -> str:
    """sha256 hex digest of :func:`normalize_code` (parsed and unparsed programs hash in separate spaces)."""
    try:
        ast.parse(code)
        space = "ast"
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        space = "text"
    return hashlib.sha256(f"{space}\n{normalize_code(code, rename_locals)}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class FingerprintSet:
    """How many times each distinct attempt (by :func:`fingerprint`) has been added."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, code: str) -> bool:
        """Count an attempt; True when it is new."""
        return self.add_fingerprint(fingerprint(code))

    def add_fingerprint(self, key: str) -> bool:
        """Count an attempt by its :func:`fingerprint` (for a caller that needs the key too); True when it is new."""
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key] == 1

    def seen(self, code: str) -> bool:
        return fingerprint(code) in self.counts

    def count(self, code: str) -> int:
        return self.counts.get(fingerprint(code), 0)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.seen(code)

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def duplicates(self) -> int:
        return self.total - len(self.counts)

    @property
    def duplicate_rate(self) -> float:
        """Share of added attempts that repeated an earlier one (0 when empty)."""
        return self.duplicates / self.total if self.total else 0.0

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.counts = {str(key): int(value) for key, value in state["counts"].items()}
