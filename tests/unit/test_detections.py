"""Every detection the daemon can raise must be registrable: its kind is in the
catalogue and its detail is a machine code the register accepts. A free-text detail
once made the register refuse an incident (and the daemon retry forever)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import exchanged
from exchanged.core.incident import Kind, Observation

PACKAGE = Path(exchanged.__file__).parent


def _detections() -> list[tuple[str, str, str]]:
    """(where, kind, detail) of each Detection(...) call with literal arguments."""
    found: list[tuple[str, str, str]] = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Detection"
            ):
                continue
            args = list(node.args)
            keywords = {k.arg: k.value for k in node.keywords}
            kind = args[0] if args else keywords.get("kind")
            detail = args[3] if len(args) > 3 else keywords.get("detail")
            where = f"{path.name}:{node.lineno}"
            if isinstance(kind, ast.Constant) and isinstance(detail, ast.Constant):
                found.append((where, str(kind.value), str(detail.value)))
    return found


def test_the_scan_finds_the_daemons_detections() -> None:
    assert len(_detections()) >= 5


def test_every_literal_detection_is_accepted_by_the_register() -> None:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    for where, kind, detail in _detections():
        assert kind in {k.value for k in Kind}, where
        Observation(Kind(kind), "passendwijs", None, at, detail)  # raises if not a code
