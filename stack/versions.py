"""The one place that pins the versions of every server the local stack runs.

Kafka: Debezium 3.6.1.Final's parent pom builds against Kafka 4.3.0 (``version.kafka``);
we run the 4.3.1 patch release of that line for broker, tools and Connect alike.
Apicurio Registry 3.3.3 is the registry; its own Kafka Connect converter is published on
Maven Central only up to the 2.6 line, which speaks the registry's v2 API (still served
by 3.x). See ``docs/decisions/0001-schema-registry.md``.
"""

from __future__ import annotations

KAFKA_VERSION = "4.3.1"
DEBEZIUM_VERSION = "3.6.1.Final"
APICURIO_REGISTRY_VERSION = "3.3.3"
APICURIO_CONVERTER_VERSION = "2.6.13.Final"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
POSTGRES_MAJOR = 15
#: Debian bookworm's packages, run by ``stack up --with-scaleout``.
NATS_VERSION = "2.9.10"
RABBITMQ_VERSION = "3.10.8"
#: Scale-out stores (``stack up --with-scaleout``): Cassandra from Maven Central, FerretDB
#: built from the Go module proxy. Cassandra 5.0 runs on Java 11 or 17, not newer.
CASSANDRA_VERSION = "5.0.9"
CASSANDRA_MIN_JAVA = 11
CASSANDRA_MAX_JAVA = 17
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

#: Minimum Java feature release per JVM service.
KAFKA_MIN_JAVA = 17
REGISTRY_MIN_JAVA = 21
