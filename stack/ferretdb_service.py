"""FerretDB v1 (MongoDB wire protocol) on loopback with its SQLite backend (``--with-scaleout``).

FerretDB is built once from the Go module proxy (``go install module@version``) into a
per-version cache folder, ``~/.cache/bitvelocity/ferretdb-<version>`` (``BV_STACK__CACHE_DIR``
may move the root), so CI and later stacks reuse the binary. The SQLite databases live
under ``<state>/ferretdb``. FerretDB v1 has no multi-document transactions and no change
streams: the posts writer needs neither (single-document conditional upserts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from config.errors import DependencyMissingError
from stack import process
from stack.base import Endpoint, Progress, Service
from stack.tools import run_checked
from stack.versions import FERRETDB_MODULE, FERRETDB_VERSION

_GO_CANDIDATES = (Path("/usr/local/go/bin/go"), Path("/usr/lib/go/bin/go"))


def find_go() -> Path:
    """The ``go`` toolchain (only needed for the first build of FerretDB)."""
    found = shutil.which("go")
    if found:
        return Path(found)
    for candidate in _GO_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise DependencyMissingError(
        "FerretDB is built from the Go module proxy on first use, but no `go` toolchain was "
        "found (PATH, /usr/local/go/bin); install Go 1.22+ (Debian: golang-go)"
    )


def ferretdb_binary(cache_root: Path | None = None) -> Path:
    """Where the FerretDB binary of the pinned version is cached."""
    root = cache_root or Path.home() / ".cache" / "bitvelocity"
    return root / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"


def build_ferretdb(target: Path, progress: Progress) -> Path:
    """``go install`` the pinned FerretDB into ``target``'s folder (no-op when present)."""
    if target.is_file():
        return target
    go = find_go()
    staging = target.parent.with_name(target.parent.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    progress(f"ferretdb: building {FERRETDB_MODULE} {FERRETDB_VERSION} with Go (once, minutes)")
    env = dict(os.environ, GOBIN=str(staging), CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    run_checked(
        [str(go), "install", "-trimpath", f"{FERRETDB_MODULE}/cmd/ferretdb@{FERRETDB_VERSION}"],
        what="FerretDB build (go install)",
        timeout_s=1800.0,
        env=env,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    (staging / "ferretdb").replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


class FerretDBService(Service):
    name = "ferretdb"
    description = f"FerretDB {FERRETDB_VERSION} (SQLite)"

    def endpoints(self) -> list[Endpoint]:
        m = self.settings.mongo
        return [Endpoint("mongodb", m.host, m.port, "BV_MONGO__PORT")]

    @property
    def binary(self) -> Path:
        return ferretdb_binary(self.settings.stack.cache_dir)

    def prepare(self, progress: Progress) -> None:
        build_ferretdb(self.binary, progress)
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        (self.home / "state").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        m = self.settings.mongo
        process.spawn(
            [
                str(self.binary),
                f"--listen-addr={m.host}:{m.port}",
                "--handler=sqlite",
                f"--sqlite-url=file:{self.home}/data/",
                f"--state-dir={self.home}/state",
                "--telemetry=disable",
                "--debug-addr=-",
                "--log-level=warn",
            ],
            log_path=self.log_path,
            pid_path=self.pid_path,
            cwd=self.home,
        )

    def probe(self) -> str | None:
        m = self.settings.mongo
        if not process.port_in_use(m.host, m.port):
            return None
        import pymongo  # the sync client suffices for a probe

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            m.uri(), serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )
        try:
            info = client.admin.command("buildInfo")
        finally:
            client.close()
        return f"FerretDB {info.get('ferretdbVersion', info.get('version', '?'))}, SQLite"
