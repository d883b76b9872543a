"""Maven failures are one clear error naming what could not be resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ArtifactResolutionError
from stack.artifacts import Artifact, is_resolved, resolve, stack_artifacts
from stack.versions import MAVEN_DEPENDENCY_PLUGIN


def test_an_unresolvable_artifact_raises_with_its_description(tmp_path: Path) -> None:
    bogus = Artifact(
        name="bogus",
        folder="bogus",
        description="a connector that does not exist",
        goal_args=(
            f"{MAVEN_DEPENDENCY_PLUGIN}:unpack",
            "-Dartifact=io.bitvelocity.nonexistent:nothing-here:0.0.1:tar.gz",
        ),
    )
    with pytest.raises(ArtifactResolutionError, match="a connector that does not exist") as caught:
        resolve(tmp_path, bogus, lambda _: None)
    assert "nothing-here" in str(caught.value)
    assert not is_resolved(tmp_path, bogus)
    assert not (tmp_path / "bogus").exists()


def test_a_second_state_folder_gets_the_plugin_unpacked_too(tmp_path: Path) -> None:
    """The dependency plugin's unpack keeps "already unpacked" markers beside the pom, shared
    by every state folder: without overwriting, the second folder got nothing at all."""
    [debezium] = [a for a in stack_artifacts() if a.name == "debezium"]
    for state in ("first", "second"):
        folder = resolve(tmp_path / state, debezium, lambda _: None)
        assert any(folder.rglob("*.jar")), f"{state} state folder: nothing unpacked"
