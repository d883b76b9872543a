"""The local stack: Kafka (KRaft), Kafka Connect with Debezium, Apicurio Registry,
PostgreSQL and Redis, run from Maven Central jars and Debian packages without Docker.

Entry points are ``bitvelocity stack up|down|status|logs`` (see ``cli.main``) and
``stack.manager.Stack`` for tests.
"""
