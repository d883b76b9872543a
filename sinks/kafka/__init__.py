"""Kafka as a sink: dead letters."""
