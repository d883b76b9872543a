"""The JDBC sink plugin is optional: a default `stack up` neither resolves nor loads it."""

from __future__ import annotations

from stack.artifacts import jdbc_sink_artifact, optional_artifacts, stack_artifacts
from stack.versions import DEBEZIUM_VERSION


def test_default_stack_does_not_resolve_the_jdbc_sink() -> None:
    assert "jdbc-sink" not in {artifact.name for artifact in stack_artifacts()}
    assert [artifact.name for artifact in optional_artifacts()] == ["jdbc-sink"]


def test_jdbc_sink_lands_in_connects_plugin_path_and_a_version_change_re_resolves() -> None:
    pinned = jdbc_sink_artifact()
    assert pinned.folder.startswith("connect-plugins/")
    assert f"debezium-connector-jdbc:{DEBEZIUM_VERSION}:tar.gz:plugin" in pinned.goal_args[1]
    assert jdbc_sink_artifact("3.6.0.Final").fingerprint() != pinned.fingerprint()
