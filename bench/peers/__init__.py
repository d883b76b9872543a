"""Peers the harness measures us against: Quix Streams, Debezium's JDBC sink, naive Faust."""
