"""No test calls a private method or imports a private function of the product (issue #21):
a test goes through what the code offers its callers, so a refactoring behind a public
function never breaks a test that still describes the behaviour."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: Test modules allowed a private call while it is being made public (none now).
PENDING: set[str] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(source: str) -> list[str]:
    """``obj._method(...)`` calls (not on ``self``/``cls``) and ``from x import _name``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            if _private(node.func.attr) and not own:
                found.append(f"line {node.lineno}: .{node.func.attr}()")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [
                f"line {node.lineno}: import {a.name}" for a in node.names if _private(a.name)
            ]
    return found


def test_the_check_finds_a_private_call_and_a_private_import() -> None:
    source = "from m import _f, g\nobj._step(1)\nself._own()\nobj.__len__()\n"
    assert private_uses(source) == ["line 1: import _f", "line 2: ._step()"]


def test_no_test_calls_a_private_method_of_the_product() -> None:
    offenders = {
        str(path.relative_to(TESTS)): uses
        for path in sorted(TESTS.rglob("*.py"))
        if (uses := private_uses(path.read_text(encoding="utf-8")))
        and str(path.relative_to(TESTS)) not in PENDING
    }
    assert offenders == {}
