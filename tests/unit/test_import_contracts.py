"""The import rules of ``.importlinter`` (issue #21): checked by import-linter on every run.

The second test proves the rules bite: a copy of the project's contracts over a tiny tree
whose ``serdes`` imports a Kafka client must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, *, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_project_keeps_every_import_contract() -> None:
    result = _lint(ROOT, pythonpath=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "0 broken" in result.stdout


def test_a_decoder_that_imports_a_kafka_client_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    config = (tmp_path / ".importlinter").read_text()
    for package in _root_packages(config):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "serdes" / "registry.py").write_text("import httpx\n")
    (tmp_path / "serdes" / "debezium.py").write_text("")
    (tmp_path / "serdes" / "decode.py").write_text("import confluent_kafka\n")
    result = _lint(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0
    assert "serdes is not allowed to import confluent_kafka" in result.stdout


def _root_packages(config: str) -> list[str]:
    block = config.split("root_packages =", 1)[1].split("include_external_packages", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]
