"""The peers the harness measures us against: Quix Streams, Debezium's JDBC sink, a naive Faust agent."""
