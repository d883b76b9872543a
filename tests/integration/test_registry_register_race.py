"""Workers starting together register the same new subject at the same moment; all succeed.

Found by the chaos run: of two workers started together, one exited with "rule named
'COMPATIBILITY' already exists" (Apicurio's 409 to the loser of the rule creation). Three
threads race on a fresh subject, five times; before the fix every round failed.
"""

from __future__ import annotations

import secrets
import threading

from config.settings import Settings
from serdes.registry import RegistryClient

SCHEMA = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}'


def test_concurrent_first_registrations_of_a_subject_all_succeed(settings: Settings) -> None:
    failures: list[str] = []
    for _ in range(5):
        subject = f"bv-test-race-{secrets.token_hex(4)}-value"
        barrier = threading.Barrier(3)

        def register(subject: str = subject, barrier: threading.Barrier = barrier) -> None:
            with RegistryClient(settings.registry) as client:
                barrier.wait(timeout=30)
                try:
                    client.register(subject, SCHEMA, "BACKWARD")
                except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                    failures.append(repr(exc))

        threads = [threading.Thread(target=register) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with RegistryClient(settings.registry) as client:
            assert client.compatibility(subject) == "BACKWARD"
            client.delete_subject(subject)
    assert failures == []
