"""Find the programs the stack runs on (Java, Maven, PostgreSQL, Redis), with clear errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from config.errors import DependencyMissingError
from stack.versions import POSTGRES_MAJOR

_JVM_ROOT = Path("/usr/lib/jvm")
_INSTALL_HINT = "run ./bv once (it installs what the stack needs) or see the README"


def java_feature_version(java_home: Path) -> int | None:
    """The feature release (17, 21, 25...) of a JDK, read from its ``release`` file."""
    release = java_home / "release"
    try:
        text = release.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def find_java(
    minimum: int, configured: Path | None = None, setting: str = "", *, maximum: int | None = None
) -> Path:
    """A ``java`` binary of release ``minimum`` (up to ``maximum``); a configured home wins."""
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    path_java = shutil.which("java")
    if path_java:
        candidates.append(Path(path_java).resolve().parent.parent)
    if _JVM_ROOT.is_dir():
        candidates.extend(sorted(p for p in _JVM_ROOT.iterdir() if p.is_dir()))
    for home in candidates:
        version = java_feature_version(home)
        binary = home / "bin" / "java"
        too_new = maximum is not None and version is not None and version > maximum
        if version is not None and version >= minimum and not too_new and binary.is_file():
            return binary
    hint = f" or set {setting} to a JDK home" if setting else ""
    wanted = f"{minimum}+" if maximum is None else f"{minimum} to {maximum}"
    raise DependencyMissingError(
        f"no Java {wanted} found (looked at {', '.join(map(str, candidates)) or 'nothing'}); "
        f"install a JDK {wanted}{hint}"
    )


def find_maven() -> Path:
    """The ``mvn`` launcher."""
    found = shutil.which("mvn")
    if not found:
        raise DependencyMissingError(f"Maven (mvn) is not installed; {_INSTALL_HINT}")
    return Path(found)


def postgres_bindir() -> Path:
    """The server binaries of the Debian PostgreSQL package (initdb, pg_ctl, postgres)."""
    bindir = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
    if not (bindir / "pg_ctl").is_file() or not (bindir / "initdb").is_file():
        raise DependencyMissingError(
            f"PostgreSQL {POSTGRES_MAJOR} server binaries are missing in {bindir}; "
            f"apt-get install postgresql-{POSTGRES_MAJOR} postgresql-{POSTGRES_MAJOR}-partman, "
            f"or {_INSTALL_HINT}"
        )
    return bindir


def redis_server() -> Path:
    """The ``redis-server`` binary from Debian's package."""
    found = shutil.which("redis-server")
    if not found:
        raise DependencyMissingError(
            f"redis-server is not installed; apt-get install redis-server, or {_INSTALL_HINT}"
        )
    return Path(found)


def run_checked(
    command: list[str],
    *,
    what: str,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> str:
    """Run a short command, returning stdout; a failure raises with its output and purpose."""
    try:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyMissingError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-8:]
        raise DependencyMissingError(
            f"{what} failed (exit {result.returncode}): " + " | ".join(output)
        )
    return result.stdout


def prometheus_binary(name: str = "prometheus") -> Path:
    """``prometheus`` or ``promtool`` from Debian's ``prometheus`` package."""
    found = shutil.which(name)
    if not found:
        raise DependencyMissingError(
            f"{name} is not installed; apt-get install prometheus, or {_INSTALL_HINT}"
        )
    return Path(found)
