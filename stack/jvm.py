"""Shared plumbing of the JVM services: the Kafka lib folder, Log4j config, java command."""

from __future__ import annotations

from pathlib import Path

from config.settings import StackSettings
from stack.artifacts import artifact_dir, optional_artifacts, resolve, stack_artifacts
from stack.base import Progress, StackPaths
from stack.tools import find_java
from stack.versions import KAFKA_MIN_JAVA

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `bitvelocity stack up`: console logging, which the stack sends to logs/. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="console" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{ISO8601}] %-5p %c{1} - %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.reflections" level="ERROR"/>
    <Root level="INFO"><AppenderRef ref="console"/></Root>
  </Loggers>
</Configuration>
"""


def resolve_named(paths: StackPaths, name: str, progress: Progress) -> Path:
    """Resolve the stack artifact called ``name`` and return its folder."""
    for artifact in [*stack_artifacts(), *optional_artifacts()]:
        if artifact.name == name:
            return resolve(paths.jvm, artifact, progress)
    raise KeyError(name)


def artifact_folder(paths: StackPaths, name: str) -> Path:
    """Folder of the stack artifact called ``name`` (resolved or not)."""
    for artifact in [*stack_artifacts(), *optional_artifacts()]:
        if artifact.name == name:
            return artifact_dir(paths.jvm, artifact)
    raise KeyError(name)


def log4j_config(paths: StackPaths) -> Path:
    """The Log4j 2 configuration shared by the Kafka broker, its tools and Connect."""
    path = paths.state / "conf" / "log4j2.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != _LOG4J2:
        path.write_text(_LOG4J2, encoding="utf-8")
    return path


def kafka_java_command(
    stack: StackSettings, paths: StackPaths, heap_mb: int, main_class: str, *args: str
) -> list[str]:
    """A ``java`` command line running ``main_class`` from the Kafka lib folder."""
    java = find_java(KAFKA_MIN_JAVA, stack.java_home, "BV_STACK__JAVA_HOME")
    lib = artifact_folder(paths, "kafka")
    return [
        str(java),
        f"-Xms{min(256, heap_mb)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config(paths)}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp",
        f"{lib}/*",
        main_class,
        *args,
    ]


def write_properties(path: Path, values: dict[str, str]) -> None:
    """Write a Java ``.properties`` file (rewritten on every start from the settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{key}={value}" for key, value in values.items())
    path.write_text(
        "# Written by `bitvelocity stack up` on every start; edit the settings, not this file.\n"
        + body
        + "\n",
        encoding="utf-8",
    )
