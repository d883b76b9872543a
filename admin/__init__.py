"""Admin clients for the pipeline's brokers: Kafka Connect (connector specs, register, status),
Kafka topics and offsets, the capture's replication slots, dead-letter replay.

One home shared by the ``bitvelocity`` command (``cli/``), the demo, ``bench/`` and ``chaos/``:
they administer the same Kafka and Connect, whichever process runs them.
"""
