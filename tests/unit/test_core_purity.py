"""exchanged/core must not do I/O: no imports of I/O libraries, no file functions."""

from __future__ import annotations

import ast
from pathlib import Path

import exchanged.core

CORE = Path(exchanged.core.__file__).parent
FORBIDDEN_MODULES = {
    "gnupg", "paramiko", "watchdog", "sqlite3", "subprocess", "socket", "os", "shutil",
    "pathlib", "io", "tempfile", "openpyxl", "smtplib", "structlog", "time", "threading",
    "asyncio", "urllib", "http", "exchanged.adapters",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    assert len(_core_files()) >= 5


def test_core_imports_no_io_library() -> None:
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN_MODULES or any(
                    name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES
                ):
                    offenders.append(f"{path.name}: import {name}")
    assert offenders == []


def test_core_calls_no_io_builtin() -> None:
    offenders = []
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in FORBIDDEN_CALLS
            ):
                offenders.append(f"{path.name}:{node.lineno}: {node.func.id}()")
    assert offenders == []


def test_the_check_catches_an_offender(tmp_path: Path) -> None:
    """The purity test must be able to fail: an import of sqlite3 is seen."""
    source = "import sqlite3\nfrom os import path\n"
    tree = ast.parse(source)
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert {"sqlite3", "os"} <= set(imported) & FORBIDDEN_MODULES
