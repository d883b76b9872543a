"""Decoding and encoding: registry framing, Avro, the schema registry client, Debezium envelopes."""
