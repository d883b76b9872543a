"""No superuser in the application's settings: defaults, bootstrap script, compose, restore.

The invariant (docs/decisions/0016-no-superuser-in-settings.md): the roles the settings
name are created by the bootstrap script with NOSUPERUSER, the script reads every name and
password from the environment, and docker-compose.yml feeds it the same variables.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

from backup.logical import TargetCatalog, skip_existing
from config.settings import PROJECT_ROOT, Settings
from stack.postgres_service import BOOTSTRAP_ENV, BOOTSTRAP_SQL

SUPERUSER_NAMES = {"postgres", "root", "admin"}


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Every declared default, nested sections flattened to ``section.field``."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        default = field.default
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update({f"{name}.{k}": v for k, v in _defaults(annotation).items()})
        else:
            found[name] = default
    return found


def test_no_default_in_the_settings_names_a_superuser() -> None:
    defaults = _defaults(Settings)
    named = {key: value for key, value in defaults.items() if value in SUPERUSER_NAMES}
    assert named == {}
    users = {k: v for k, v in defaults.items() if k.endswith(("_user", ".username"))}
    assert users["postgres.admin_user"] == "bv_admin"
    assert "postgres" not in {str(v) for v in users.values()}


def test_the_bootstrap_script_reads_exactly_the_variables_the_stack_gives_it() -> None:
    sql = BOOTSTRAP_SQL.read_text(encoding="utf-8")
    read = re.findall(r"^\\getenv \w+ (\w+)$", sql, flags=re.MULTILINE)
    assert sorted(read) == sorted(BOOTSTRAP_ENV)


def test_every_role_the_bootstrap_alters_is_nosuperuser() -> None:
    sql = BOOTSTRAP_SQL.read_text(encoding="utf-8")
    alters = re.findall(r"ALTER ROLE (\S+) WITH ([^;]+);", sql)
    assert {role for role, _ in alters} == {
        ':"admin_user"',
        ':"debezium_user"',
        ':"worker_user"',
        ':"replication_user"',
    }
    for role, options in alters:
        assert "NOSUPERUSER" in options.split(), role
        assert "NOBYPASSRLS" in options.split(), role


def test_compose_bootstraps_postgres_with_the_same_script_and_variables() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    postgres = compose["services"]["postgres"]
    environment = postgres["environment"]
    assert set(BOOTSTRAP_ENV) <= set(environment)
    assert "POSTGRES_USER" not in environment  # the image's superuser stays out of BV_ settings
    assert "BV_POSTGRES__ADMIN_PASSWORD" not in environment["POSTGRES_PASSWORD"]
    assert environment["BV_POSTGRES__ADMIN_USER"].endswith(":-bv_admin}")
    mounts = [str(v) for v in postgres["volumes"]]
    assert any(
        m.startswith("./stack/postgres_bootstrap.sql:/docker-entrypoint-initdb.d/") for m in mounts
    )


TOC = """;
; Archive created at 2026-11-27 01:16:53 UTC
3; 2615 16385 SCHEMA - partman postgres
5; 3079 16386 EXTENSION - pg_partman
4821; 0 0 COMMENT - EXTENSION pg_partman
6; 3079 16500 EXTENSION - pg_stat_statements
4822; 0 0 COMMENT - EXTENSION pg_stat_statements
7; 2615 16600 SCHEMA - audit bv_admin
230; 1259 16700 TABLE public orders bv_admin
4900; 0 16390 TABLE DATA partman part_config postgres
"""


def test_a_restore_skips_the_extensions_and_schemas_its_target_has_from_template1() -> None:
    kept = skip_existing(
        TOC,
        TargetCatalog(
            schemas=frozenset({"public", "partman"}),
            extensions=frozenset({"plpgsql", "pg_partman", "pg_stat_statements"}),
        ),
    ).splitlines()
    assert not [line for line in kept if "EXTENSION" in line or "SCHEMA - partman" in line]
    assert "7; 2615 16600 SCHEMA - audit bv_admin" in kept  # not in the target: restored
    assert "230; 1259 16700 TABLE public orders bv_admin" in kept
    assert "4900; 0 16390 TABLE DATA partman part_config postgres" in kept  # its config rows


def test_a_restore_into_a_bare_database_keeps_every_entry() -> None:
    kept = skip_existing(TOC, TargetCatalog(frozenset({"public"}), frozenset({"plpgsql"})))
    assert kept.splitlines() == TOC.splitlines()
