"""Apache Cassandra 5.0 as a tiny one-node cluster on loopback (``stack up --with-scaleout``).

The server is ``cassandra-all`` and its dependencies from Maven Central, run as a plain
``java`` process with ``CassandraDaemon`` (no tarball, no shell scripts): the JVM flags of
the distribution's ``jvm17-server.options`` that the daemon needs, a small heap, one
token, few threads and small memtables, so it fits next to Kafka on a 2-core machine.
Everything (data, commit log, hints) lives under ``<state>/cassandra``. Without JMX ports
set the daemon starts no JMX server; the native protocol port is the only client port.
"""

from __future__ import annotations

from pathlib import Path

from stack import process
from stack.artifacts import Artifact, artifact_dir, resolve
from stack.base import Endpoint, Progress, Service
from stack.tools import find_java
from stack.versions import (
    CASSANDRA_MAX_JAVA,
    CASSANDRA_MIN_JAVA,
    CASSANDRA_VERSION,
    MAVEN_DEPENDENCY_PLUGIN,
)

CASSANDRA_ARTIFACT = Artifact(
    name="cassandra",
    folder="cassandra-lib",
    description=f"Apache Cassandra {CASSANDRA_VERSION}",
    pom=Path(__file__).resolve().parent / "maven" / "cassandra.xml",
    goal_args=(
        f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-Dcassandra.version={CASSANDRA_VERSION}",
    ),
)

# From the distribution's conf/jvm17-server.options: the daemon reflects into these.
_JAVA17_FLAGS = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.math=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
)

_LOGBACK = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `bitvelocity stack up`: INFO to the console, which the stack sends to logs/. -->
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>[%date{ISO8601}] %-5level %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def cassandra_yaml(home: Path, host: str, native_port: int, storage_port: int) -> str:
    """The tiny-node ``cassandra.yaml``: one token, loopback, small memtables and caches."""
    return f"""# Written by `bitvelocity stack up` on every start; edit the settings, not this file.
cluster_name: bitvelocity
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
data_file_directories:
  - {home}/data
commitlog_directory: {home}/commitlog
saved_caches_directory: {home}/saved_caches
hints_directory: {home}/hints
cdc_raw_directory: {home}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
native_transport_max_threads: 32
endpoint_snitch: SimpleSnitch
concurrent_reads: 4
concurrent_writes: 8
concurrent_counter_writes: 2
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
compaction_throughput: 32MiB/s
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 1MiB
prepared_statements_cache_size: 8MiB
# The writers send single-partition UNLOGGED batches of up to 50 rows (~10 KiB).
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB
disk_failure_policy: stop
commit_failure_policy: stop
auto_snapshot: false
dynamic_snitch: false
write_request_timeout: 5000ms
read_request_timeout: 5000ms
range_request_timeout: 10000ms
request_timeout: 10000ms
"""


class CassandraService(Service):
    name = "cassandra"
    description = f"Apache Cassandra {CASSANDRA_VERSION}"

    def endpoints(self) -> list[Endpoint]:
        c = self.settings.cassandra
        return [
            Endpoint("cql", c.host, c.port, "BV_CASSANDRA__PORT"),
            Endpoint("storage", c.host, c.storage_port, "BV_CASSANDRA__STORAGE_PORT"),
        ]

    def _java(self) -> Path:
        return find_java(
            CASSANDRA_MIN_JAVA,
            self.settings.stack.java_home,
            "BV_STACK__JAVA_HOME",
            maximum=CASSANDRA_MAX_JAVA,
        )

    def prepare(self, progress: Progress) -> None:
        self._java()
        resolve(self.paths.jvm, CASSANDRA_ARTIFACT, progress)
        c = self.settings.cassandra
        for folder in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        (self.home / "cassandra.yaml").write_text(
            cassandra_yaml(self.home, c.host, c.port, c.storage_port), encoding="utf-8"
        )
        (self.home / "logback.xml").write_text(_LOGBACK, encoding="utf-8")

    def command(self) -> list[str]:
        """The ``java`` command line of the daemon."""
        heap = self.settings.cassandra.heap_mb
        lib = artifact_dir(self.paths.jvm, CASSANDRA_ARTIFACT)
        return [
            str(self._java()),
            f"-Xms{heap}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=100",
            "-XX:ActiveProcessorCount=2",
            "-XX:MaxDirectMemorySize=256m",
            "-Djava.awt.headless=true",
            *_JAVA17_FLAGS,
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config=file://{self.home}/cassandra.yaml",
            f"-Dcassandra.storagedir={self.home}",
            f"-Dcassandra.logdir={self.paths.logs}",
            f"-Dlogback.configurationFile={self.home}/logback.xml",
            # One node and its own seed: nothing to wait for.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=0",
            "-Dcassandra.max_queued_native_transport_requests=1024",
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def start(self) -> None:
        process.spawn(self.command(), log_path=self.log_path, pid_path=self.pid_path, cwd=self.home)

    def probe(self) -> str | None:
        c = self.settings.cassandra
        if not process.port_in_use(c.host, c.port):
            return None
        from sinks.cassandra.session import cql_session  # the driver is slow to import

        with cql_session(c, keyspace=None, timeout_s=3.0) as session:
            row = session.execute("SELECT release_version FROM system.local").one()
        return f"Cassandra {row.release_version}, CQL on {c.host}:{c.port}"
