"""Shared fixtures: a real two-party workspace (real sshd, real gpg) for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanged.testing.workspace import Workspace, build_workspace


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private folder: GnuPG's agent sockets must fit in sun_path (108 bytes)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="xt-"))
    root.chmod(0o700)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workspace(short_tmp: Path) -> Iterator[Workspace]:
    """Two parties, keys, configs and both sshd servers started; daemons not started."""
    ws = build_workspace(short_tmp, settle_seconds=0.2)
    try:
        yield ws
    finally:
        ws.close()
