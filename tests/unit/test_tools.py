"""Missing programs are reported with what to install or which setting to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigurationError, DependencyMissingError
from stack.tools import find_java, java_feature_version


def test_a_java_too_old_for_a_service_names_the_setting() -> None:
    with pytest.raises(DependencyMissingError, match="BV_STACK__JAVA_HOME") as caught:
        find_java(99, None, "BV_STACK__JAVA_HOME")
    assert "Java 99+" in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_java_release_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "release").write_text('IMPLEMENTOR="x"\nJAVA_VERSION="21.0.4"\n')
    assert java_feature_version(tmp_path) == 21
    assert java_feature_version(tmp_path / "missing") is None


def test_a_configured_home_that_qualifies_wins(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").write_text("#!/bin/sh\n")
    (tmp_path / "release").write_text('JAVA_VERSION="40"\n')
    assert find_java(30, tmp_path) == tmp_path / "bin" / "java"
