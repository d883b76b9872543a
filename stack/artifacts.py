"""Resolve the stack's JVM artifacts from Maven Central, once, with visible progress.

Each artifact lands in its own folder under ``<state>/jvm``; a ``.complete`` file holding a
fingerprint of what was asked for marks it done, so a warm ``stack up`` skips Maven
entirely and a version change re-resolves. Resolution writes into a temporary folder and
renames it into place, so an interrupted download never looks complete. Downloads are
cached in Maven's local repository (``~/.m2``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.errors import ArtifactResolutionError
from stack import versions
from stack.tools import find_maven

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
_MARKER = ".complete"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Artifact:
    """One folder of jars the stack needs and the Maven goal that fills it."""

    name: str
    folder: str
    description: str
    goal_args: tuple[str, ...]
    pom: Path | None = None

    def fingerprint(self) -> str:
        digest = hashlib.sha256("\0".join(self.goal_args).encode())
        if self.pom is not None:
            digest.update(self.pom.read_bytes())
        return digest.hexdigest()


def stack_artifacts() -> list[Artifact]:
    """Everything the JVM services need, in resolution order."""
    plugin = versions.MAVEN_DEPENDENCY_PLUGIN
    return [
        Artifact(
            name="kafka",
            folder="kafka-lib",
            description=f"Kafka {versions.KAFKA_VERSION} broker, tools and Connect",
            pom=MAVEN_DIR / "pom.xml",
            goal_args=(
                f"{plugin}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={versions.KAFKA_VERSION}",
            ),
        ),
        Artifact(
            name="debezium",
            folder="connect-plugins/debezium-connector-postgres",
            description=f"Debezium PostgreSQL connector {versions.DEBEZIUM_VERSION} plugin",
            goal_args=(
                f"{plugin}:unpack",
                "-Dartifact=io.debezium:debezium-connector-postgres:"
                f"{versions.DEBEZIUM_VERSION}:tar.gz:plugin",
            ),
        ),
        Artifact(
            name="apicurio-converter",
            folder="connect-plugins/apicurio-converter",
            description=f"Apicurio Avro converter {versions.APICURIO_CONVERTER_VERSION}",
            pom=MAVEN_DIR / "apicurio-converter.xml",
            goal_args=(
                f"{plugin}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dapicurio.converter.version={versions.APICURIO_CONVERTER_VERSION}",
            ),
        ),
        Artifact(
            name="registry",
            folder="apicurio-registry",
            description=f"Apicurio Registry {versions.APICURIO_REGISTRY_VERSION}",
            goal_args=(
                f"{plugin}:unpack",
                "-Dartifact=io.apicurio:apicurio-registry-app:"
                f"{versions.APICURIO_REGISTRY_VERSION}:tar.gz:all",
            ),
        ),
    ]


def jdbc_sink_artifact(version: str = versions.DEBEZIUM_VERSION) -> Artifact:
    """Debezium's JDBC sink connector as a Connect plugin folder (the benchmark's JVM peer)."""
    return Artifact(
        name="jdbc-sink",
        folder="connect-plugins/debezium-connector-jdbc",
        description=f"Debezium JDBC sink connector {version} plugin",
        goal_args=(
            f"{versions.MAVEN_DEPENDENCY_PLUGIN}:unpack",
            f"-Dartifact=io.debezium:debezium-connector-jdbc:{version}:tar.gz:plugin",
        ),
    )


def optional_artifacts() -> list[Artifact]:
    """Resolved only when asked for (``bitvelocity bench`` asks for the JDBC sink), so a
    default ``stack up`` neither downloads nor loads them."""
    return [jdbc_sink_artifact()]


def artifact_dir(jvm_dir: Path, artifact: Artifact) -> Path:
    """Where ``artifact`` lives once resolved."""
    return jvm_dir / artifact.folder


def is_resolved(jvm_dir: Path, artifact: Artifact) -> bool:
    """True when the folder holds exactly what the current pins ask for."""
    marker = artifact_dir(jvm_dir, artifact) / _MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == artifact.fingerprint()
    except OSError:
        return False


def resolve(jvm_dir: Path, artifact: Artifact, progress: Progress) -> Path:
    """Resolve ``artifact`` into its folder (a no-op when already resolved); returns the folder."""
    target = artifact_dir(jvm_dir, artifact)
    if is_resolved(jvm_dir, artifact):
        return target
    mvn = find_maven()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pom = artifact.pom or MAVEN_DIR / "pom.xml"
    command = [
        str(mvn),
        "-B",
        "-s",
        str(MAVEN_DIR / "settings.xml"),
        "-f",
        str(pom),
        *artifact.goal_args,
        f"-DoutputDirectory={staging}",
        # unpack remembers what it unpacked in marker files under the pom's target/ folder
        # (the plugin offers no property to move them) and then skips it, whatever the output
        # folder: a second state folder got nothing. Overwriting releases always unpacks.
        "-Dmdep.overWriteReleases=true",
    ]
    progress(f"resolving {artifact.description} from Maven Central")
    _run_maven(command, artifact, progress)
    if not any(staging.iterdir()):
        raise ArtifactResolutionError(
            f"Maven resolved nothing for {artifact.description}; check {pom}"
        )
    (staging / _MARKER).write_text(artifact.fingerprint() + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _run_maven(command: list[str], artifact: Artifact, progress: Progress) -> None:
    downloaded = 0
    errors: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            text = line.strip()
            if text.startswith("Downloaded from"):
                downloaded += 1
                name = text.rsplit("/", 1)[-1].split(" ")[0]
                progress(f"{artifact.name}: downloaded {downloaded} files (latest {name})")
            elif text.startswith("[ERROR]") and len(errors) < 6:
                errors.append(text.removeprefix("[ERROR]").strip())
        returncode = process.wait()
    if returncode != 0:
        detail = " | ".join(e for e in errors if e) or f"exit code {returncode}"
        raise ArtifactResolutionError(
            f"Maven could not resolve {artifact.description}: {detail}. "
            "Check that Maven Central is reachable (mvn -v; ~/.m2/settings.xml proxies)."
        )
