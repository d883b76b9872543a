"""Migration folders: strict naming and numbering, so history cannot silently fork."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.postgres.migrate import MigrationError, load_migrations


def test_migrations_load_in_version_order(tmp_path: Path) -> None:
    (tmp_path / "0002_add_index.sql").write_text("SELECT 2;")
    (tmp_path / "0001_create_tables.sql").write_text("SELECT 1;")
    loaded = load_migrations(tmp_path)
    assert [(m.version, m.name) for m in loaded] == [(1, "create_tables"), (2, "add_index")]
    assert loaded[0].checksum != loaded[1].checksum


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0001_b.sql"], "unique"),
        (["0000_zero.sql"], "start at 1"),
        (["1_a.sql"], "NNNN_lowercase_words"),
        (["0001_Bad-Name.sql"], "NNNN_lowercase_words"),
    ],
)
def test_malformed_folders_are_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_a_number_reserved_by_another_branch_may_be_skipped(tmp_path: Path) -> None:
    for name in ("0001_a.sql", "0003_c.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [m.version for m in load_migrations(tmp_path)] == [1, 3]
