"""A loopback TCP proxy in front of PostgreSQL that cuts connections right after a COMMIT.

The COMMIT reaches the server (which commits), then both sides of the connection are
closed before the reply returns: the client cannot know whether its transaction
committed, exactly the ambiguous case DESIGN.md section 5 point 4 is about.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

# asyncpg commits with a simple-protocol Query message: 'Q', int32 length 12, "COMMIT;\0".
COMMIT_MESSAGE = b"Q\x00\x00\x00\x0cCOMMIT;\x00"


class CommitCuttingProxy:
    """Forwards to ``upstream``; every ``cut_every``-th COMMIT is delivered, then cut."""

    def __init__(self, upstream_host: str, upstream_port: int, *, cut_every: int = 3) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cut_every = cut_every
        self.commits = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CommitCuttingProxy:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            cut = threading.Event()
            for source, target, from_client in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, target, from_client, cut), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        from_client: bool,
        cut: threading.Event,
    ) -> None:
        try:
            while True:
                if from_client:
                    chunk = source.recv(65536)
                    if not chunk:
                        break
                    if COMMIT_MESSAGE in chunk and self._should_cut():
                        cut.set()  # from now on the server's answers are swallowed
                        target.sendall(chunk)
                        time.sleep(0.3)  # the server commits; its answer never arrives
                        break
                    target.sendall(chunk)
                else:
                    chunk = source.recv(65536)
                    if not chunk or cut.is_set():
                        break
                    target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _should_cut(self) -> bool:
        with self._lock:
            self.commits += 1
            if self.commits % self.cut_every == 0:
                self.cuts += 1
                return True
            return False
