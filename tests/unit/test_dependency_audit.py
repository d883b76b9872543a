"""The dependency-audit policy: every advisory needs a dated, explained exception."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from config.errors import ConfigurationError
from security.dependency_audit import (
    EXCEPTIONS_FILE,
    Advisory,
    AuditException,
    AuditReport,
    advisories_of_latest,
    load_exceptions,
    parse_pip_audit,
    violations,
)

TODAY = date(2026, 11, 26)
ADVISORY = Advisory("GHSA-aaaa-bbbb-cccc", "Some_Pkg", "1.0", ("1.1",), ("CVE-2026-1",))


def test_an_advisory_without_exception_is_a_violation() -> None:
    [line] = violations([ADVISORY], [], TODAY)
    assert "Some_Pkg 1.0: GHSA-aaaa-bbbb-cccc (fixed in 1.1)" in line


@pytest.mark.parametrize("listed_id", ["GHSA-aaaa-bbbb-cccc", "CVE-2026-1"])
def test_a_valid_exception_by_id_or_alias_accepts_the_advisory(listed_id: str) -> None:
    accepted = AuditException(listed_id, "some-pkg", "not reachable from our code", TODAY)
    assert violations([ADVISORY], [accepted], TODAY) == []


def test_an_exception_for_another_package_does_not_count() -> None:
    other = AuditException("GHSA-aaaa-bbbb-cccc", "other-pkg", "why", date(2030, 1, 1))
    assert len(violations([ADVISORY], [other], TODAY)) == 1


def test_an_expired_exception_is_a_violation_itself() -> None:
    expired = AuditException("GHSA-aaaa-bbbb-cccc", "some-pkg", "why", date(2026, 11, 25))
    found = violations([ADVISORY], [expired], TODAY)
    assert len(found) == 2
    assert "expired on 2026-11-25" in found[1]


def test_exceptions_need_every_field_and_a_date(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text('[[exception]]\nid = "X"\npackage = "p"\nreason = "r"\nexpires = "soon"\n')
    with pytest.raises(ConfigurationError, match="expires"):
        load_exceptions(path)
    path.write_text('[[exception]]\nid = "X"\npackage = "p"\nexpires = 2027-01-01\n')
    with pytest.raises(ConfigurationError, match="reason"):
        load_exceptions(path)


def test_the_project_exceptions_file_loads_and_none_is_expired() -> None:
    assert all(e.expires >= date.today() for e in load_exceptions(EXCEPTIONS_FILE))  # noqa: DTZ011


def test_latest_release_advisories_answer_only_for_the_latest_version() -> None:
    project = {
        "info": {"version": "2.0"},
        "vulnerabilities": [
            {"id": "PYSEC-1", "fixed_in": ["2.1"], "aliases": ["CVE-1"]},
            {"id": "PYSEC-2", "withdrawn": "2026-01-01"},
        ],
    }
    assert advisories_of_latest(project, "pkg", "1.9") is None
    assert advisories_of_latest(project, "pkg", "2.0") == [
        Advisory("PYSEC-1", "pkg", "2.0", ("2.1",), ("CVE-1",))
    ]


def test_pip_audit_json_is_folded_and_skips_are_returned() -> None:
    report = AuditReport()
    skipped = parse_pip_audit(
        {
            "dependencies": [
                {"name": "a", "version": "1", "vulns": [{"id": "V", "fix_versions": ["2"]}]},
                {"name": "b", "version": "1", "vulns": []},
                {"name": "c", "skip_reason": "Dependency not found on PyPI"},
            ]
        },
        report,
    )
    assert skipped == [("c", "")]
    assert report.audited == {"a": "pip-audit", "b": "pip-audit"}
    assert report.advisories == [Advisory("V", "a", "1", ("2",))]
