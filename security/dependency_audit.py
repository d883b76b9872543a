"""Known vulnerabilities in the installed dependencies, against dated, explained exceptions.

Two sources, best first:
1. ``pip-audit`` (PyPI's per-version advisories, ``/pypi/<name>/<version>/json``).
2. Where pip-audit could not audit a package (it says "not found on PyPI" when the index it
   can reach serves no per-version JSON, as on machines that reach PyPI through a mirror),
   the project JSON ``/pypi/<name>/json``: its ``vulnerabilities`` are those of the latest
   release, so they answer for an installed version equal to the latest one. A package
   behind its latest release is then reported as *unaudited*, never as clean.

The policy (``violations``) is pure: every advisory needs an exception in
``security/vulnerability-exceptions.toml`` with an id, the package, a reason and an expiry
date; an expired exception is itself a violation, so accepted risks come back for review.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from packaging.requirements import Requirement

from config.errors import ConfigurationError, TransientError

EXCEPTIONS_FILE = Path(__file__).with_name("vulnerability-exceptions.toml")
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
#: Our own distribution: not on PyPI, nothing to look up.
OWN_DISTRIBUTIONS = frozenset({"bitvelocity-streams"})


class AuditUnavailableError(TransientError):
    """Neither pip-audit nor the registry's JSON could be asked."""


@dataclass(frozen=True)
class Advisory:
    id: str
    package: str
    version: str
    fixed_in: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class AuditException:
    """An advisory we accept until ``expires``, for a stated reason."""

    id: str
    package: str
    reason: str
    expires: date


@dataclass
class AuditReport:
    advisories: list[Advisory] = field(default_factory=list)
    #: package -> how it was audited ("pip-audit" or "pypi-latest").
    audited: dict[str, str] = field(default_factory=dict)
    #: package -> why it could not be audited.
    unaudited: dict[str, str] = field(default_factory=dict)


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def load_exceptions(path: Path = EXCEPTIONS_FILE) -> list[AuditException]:
    """The accepted advisories; a malformed entry is a configuration error, not a pass."""
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = document.get("exception", [])
    result = []
    for number, entry in enumerate(entries, start=1):
        missing = {"id", "package", "reason", "expires"} - set(entry)
        if missing or not isinstance(entry.get("expires"), date):
            raise ConfigurationError(
                f"{path.name} exception #{number} needs id, package, reason and an expires "
                f"date (YYYY-MM-DD); missing or wrong: {', '.join(sorted(missing)) or 'expires'}"
            )
        if not str(entry["reason"]).strip():
            raise ConfigurationError(f"{path.name} exception {entry['id']}: reason is empty")
        result.append(
            AuditException(
                str(entry["id"]), canonical(str(entry["package"])), str(entry["reason"]),
                entry["expires"],
            )
        )  # fmt: skip
    return result


def violations(
    advisories: Iterable[Advisory], exceptions: Sequence[AuditException], today: date
) -> list[str]:
    """One line per advisory without a valid exception, and per expired exception."""
    found = []
    valid = [e for e in exceptions if e.expires >= today]
    for advisory in advisories:
        package = canonical(advisory.package)
        if not any(e.package == package and e.id in advisory.names() for e in valid):
            fixed = ", ".join(advisory.fixed_in) or "no fix yet"
            found.append(
                f"{advisory.package} {advisory.version}: {advisory.id} (fixed in {fixed}); "
                "upgrade, or add a dated exception to security/vulnerability-exceptions.toml"
            )
    for expired in (e for e in exceptions if e.expires < today):
        found.append(
            f"exception {expired.id} for {expired.package} expired on {expired.expires}: "
            "review it (upgrade, or renew it with a new date and reason)"
        )
    return found


def dependency_closure(
    root: str = "bitvelocity-streams", extras: Iterable[str] = ("dev", "bench")
) -> dict[str, str]:
    """Canonical name -> installed version of everything ``root[extras]`` pulls in.

    The installer's own tooling in the virtualenv (pip, setuptools) is not part of it.
    """
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed
        key = canonical(dist.metadata["Name"])
        if key not in OWN_DISTRIBUTIONS:
            if key in found:
                continue
            found[key] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is None or any(
                requirement.marker.evaluate(env) for env in environments
            ):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def parse_pip_audit(document: Mapping[str, Any], report: AuditReport) -> list[tuple[str, str]]:
    """Fold pip-audit's JSON into ``report``; returns the (name, version) it skipped."""
    skipped = []
    for dep in document.get("dependencies", []):
        name = canonical(dep["name"])
        if name in OWN_DISTRIBUTIONS:
            continue
        if "skip_reason" in dep:
            skipped.append((name, str(dep.get("version", ""))))
            continue
        report.audited[name] = "pip-audit"
        for vuln in dep.get("vulns", []):
            report.advisories.append(
                Advisory(
                    vuln["id"], name, dep["version"],
                    tuple(vuln.get("fix_versions", ())), tuple(vuln.get("aliases", ())),
                )
            )  # fmt: skip
    return skipped


def advisories_of_latest(
    project: Mapping[str, Any], name: str, version: str
) -> list[Advisory] | None:
    """Advisories for ``version`` from a project JSON, or None when it is not the latest."""
    if project.get("info", {}).get("version") != version:
        return None
    return [
        Advisory(
            v["id"], name, version, tuple(v.get("fixed_in") or ()), tuple(v.get("aliases") or ())
        )
        for v in project.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]


def run_pip_audit(timeout_s: float = 120.0) -> dict[str, Any]:
    """pip-audit over this interpreter's environment, as JSON."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AuditUnavailableError(f"pip-audit did not finish in {timeout_s:.0f} s") from exc
    if done.returncode not in (0, 1):  # 1: vulnerabilities found
        raise AuditUnavailableError(f"pip-audit failed ({done.returncode}): {done.stderr[-500:]}")
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _project_json(client: httpx.Client, name: str) -> dict[str, Any] | None:
    response = client.get(PYPI_JSON.format(name=name))
    if response.status_code == 404:
        return None
    response.raise_for_status()
    project: dict[str, Any] = response.json()
    return project


def audit_environment(timeout_s: float = 120.0) -> AuditReport:
    """Audit our installed dependency tree with pip-audit, then the registry's project JSON."""
    report = AuditReport()
    versions = dependency_closure()
    skipped = parse_pip_audit(run_pip_audit(timeout_s), report)
    report.audited = {n: how for n, how in report.audited.items() if n in versions}
    report.advisories = [a for a in report.advisories if canonical(a.package) in versions]
    pending = {name: versions[name] for name, _ in skipped if name in versions} | {
        name: version for name, version in versions.items() if name not in report.audited
    }
    try:
        with (
            httpx.Client(timeout=20, follow_redirects=True) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            names = list(pending)
            projects = dict(
                zip(names, pool.map(lambda n: _project_json(client, n), names), strict=True)
            )
    except httpx.HTTPError as exc:
        raise AuditUnavailableError(f"PyPI's JSON API is unreachable: {exc}") from exc
    for name, version in sorted(pending.items()):
        project = projects[name]
        if project is None:
            report.unaudited[name] = "not on PyPI"
            continue
        found = advisories_of_latest(project, name, version)
        if found is None:
            latest = project.get("info", {}).get("version")
            report.unaudited[name] = f"{version} installed, per-version advisories unreachable "
            report.unaudited[name] += f"(latest {latest})"
            continue
        report.audited[name] = "pypi-latest"
        report.advisories += found
    return report
