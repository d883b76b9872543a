"""Free loopback ports and scratch folders for tests that start private servers
(PostgreSQL clusters, Prometheus, Redis, HTTP servers)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder under /var/tmp, readable by a server's own user, removed afterwards.

    Not pytest's ``tmp_path``: PostgreSQL, run as its OS user, must traverse the path, and
    pytest's temporary root is private to the test's user."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
