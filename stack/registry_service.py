"""Apicurio Registry 3 with its Confluent-compatible API, storing schemas in an H2 file.

File storage (not the default in-memory H2) matters: schema ids are written into every
Kafka record, so a registry restart that forgot them would turn good records into
"unknown schema id" dead letters. Apicurio 3.3 is compiled for Java 21, so it runs on the
newest JDK found (``BV_STACK__REGISTRY_JAVA_HOME`` to choose one).
"""

from __future__ import annotations

import httpx

from stack import process
from stack.base import Endpoint, Progress, Service, url_host_port
from stack.jvm import artifact_folder, resolve_named
from stack.tools import find_java
from stack.versions import APICURIO_REGISTRY_VERSION, REGISTRY_MIN_JAVA


class RegistryService(Service):
    name = "registry"
    description = f"Apicurio Registry {APICURIO_REGISTRY_VERSION}"

    def endpoints(self) -> list[Endpoint]:
        host, port = url_host_port(self.settings.registry.url)
        return [
            Endpoint("api", host, port, "BV_REGISTRY__URL"),
            Endpoint(
                "management",
                host,
                self.settings.registry.management_port,
                "BV_REGISTRY__MANAGEMENT_PORT",
            ),
        ]

    def prepare(self, progress: Progress) -> None:
        find_java(
            REGISTRY_MIN_JAVA,
            self.settings.stack.registry_java_home,
            "BV_STACK__REGISTRY_JAVA_HOME",
        )
        resolve_named(self.paths, "registry", progress)
        (self.home / "data").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        java = find_java(
            REGISTRY_MIN_JAVA,
            self.settings.stack.registry_java_home,
            "BV_STACK__REGISTRY_JAVA_HOME",
        )
        host, port = url_host_port(self.settings.registry.url)
        heap = self.settings.stack.registry_heap_mb
        jar = artifact_folder(self.paths, "registry") / "quarkus-run.jar"
        db = self.home / "data" / "registry"
        process.spawn(
            [
                str(java),
                "-Xms64m",
                f"-Xmx{heap}m",
                "-XX:+UseSerialGC",
                "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
                f"-Dquarkus.http.host={host}",
                f"-Dquarkus.http.port={port}",
                f"-Dquarkus.management.host={host}",
                f"-Dquarkus.management.port={self.settings.registry.management_port}",
                f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
                "-Dapicurio.rest.deletion.artifact.enabled=true",
                "-Dapicurio.rest.deletion.artifact-version.enabled=true",
                "-Dapicurio.rest.deletion.group.enabled=true",
                "-jar",
                str(jar),
            ],
            log_path=self.log_path,
            pid_path=self.pid_path,
            cwd=self.home,
        )

    def probe(self) -> str | None:
        host, _ = url_host_port(self.settings.registry.url)
        mgmt = f"http://{host}:{self.settings.registry.management_port}"
        if httpx.get(f"{mgmt}/health/ready", timeout=3).status_code != 200:
            return None
        info = httpx.get(f"{self.settings.registry.url}/apis/registry/v3/system/info", timeout=3)
        version = info.json().get("version", "?") if info.status_code == 200 else "?"
        return f"Apicurio {version}, ccompat at /apis/ccompat/v7"
