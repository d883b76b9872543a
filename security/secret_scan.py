"""Find the configured secrets where they must never be: the repository, logs, command output.

The needles are the values themselves (every non-empty ``SecretStr`` of the settings: the
generated database and Redis passwords, the web token), so a leak is found however it was
formatted into a line. Only the setting's name is ever reported, never the value.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, SecretStr

#: Shorter values would match by chance (and no generated secret is this short).
MIN_SECRET_LENGTH = 8


def configured_secrets(settings: BaseModel, prefix: str = "BV_") -> dict[str, str]:
    """Environment-variable name -> value of every non-empty secret in ``settings``."""
    found: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if len(secret) >= MIN_SECRET_LENGTH:
                found[key] = secret
        elif isinstance(value, BaseModel):
            found.update(configured_secrets(value, f"{key}__"))
    return found


def secrets_in(text: str, secrets: Mapping[str, str]) -> list[str]:
    """Names of the secrets whose value occurs in ``text``."""
    return sorted(name for name, value in secrets.items() if value in text)


def secrets_in_files(paths: Iterable[Path], secrets: Mapping[str, str]) -> dict[str, list[str]]:
    """File -> names of the secrets it contains, for files that contain any."""
    leaks: dict[str, list[str]] = {}
    for path in paths:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            continue
        found = secrets_in(text, secrets)
        if found:
            leaks[str(path)] = found
    return leaks


def tracked_files(repository: Path) -> list[Path]:
    """Every file git tracks or would add (untracked but not ignored) in ``repository``."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=repository,
        capture_output=True,
        check=True,
    ).stdout
    return [repository / name for name in listing.decode().split("\0") if name]


def log_files(state_dir: Path) -> list[Path]:
    """The local stack's service logs, PostgreSQL's server log and Kafka Connect's config
    topic (where a connector password would land if it were not a file reference)."""
    found = [*state_dir.glob("logs/*.log"), *state_dir.glob("postgres/*.log")]
    found += state_dir.glob("kafka/data/_bv-connect-configs-*/*.log")
    return sorted(p for p in found if p.is_file())
