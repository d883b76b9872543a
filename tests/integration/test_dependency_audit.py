"""No known vulnerability in our installed dependency tree without a dated exception.

Needs the package registry (like installing does), not the stack. Which source answered for
each package, and which could not be audited, is printed (``pytest -s`` or ``-rA``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from security.dependency_audit import audit_environment, load_exceptions, violations


def test_installed_dependencies_have_no_unexcepted_known_vulnerability() -> None:
    report = audit_environment()
    today = datetime.now(UTC).date()
    print(
        f"audited {len(report.audited)} packages "
        f"({sorted(set(report.audited.values()))}), unaudited {len(report.unaudited)}:"
    )
    for name, why in sorted(report.unaudited.items()):
        print(f"  {name}: {why}")
    # An audit that audited (almost) nothing must not pass as clean.
    assert len(report.audited) >= 3 * len(report.unaudited), report.unaudited
    assert violations(report.advisories, load_exceptions(), today) == []
