"""Two workers registering a new subject at once: the loser's compatibility call gets 409.

Found by the chaos run (two workers started together, one exited). The registry's answers
are scripted with httpx's MockTransport: what is under test is the client's handling of
that sequence, not the registry.
"""

from __future__ import annotations

import httpx

from config.settings import RegistrySettings
from serdes.registry import RegistryClient


def test_a_rule_created_by_another_writer_meanwhile_is_set_again_not_fatal() -> None:
    answers = iter(
        [
            httpx.Response(404, json={"error_code": 40401, "message": "no subject"}),
            httpx.Response(200, json={"id": 7}),
            httpx.Response(
                409,
                json={"error_code": 409, "message": "A rule named 'COMPATIBILITY' already exists."},
            ),
            httpx.Response(200, json={"compatibility": "BACKWARD"}),
        ]
    )
    calls: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path.rsplit("/", 2)[-2]))
        return next(answers)

    settings = RegistrySettings()
    client = RegistryClient(settings)
    client._http = httpx.Client(
        base_url=settings.confluent_url, transport=httpx.MockTransport(handler)
    )
    with client:
        assert client.register("orders-value", '{"type": "string"}', "BACKWARD") == 7
    assert [method for method, _ in calls] == ["PUT", "POST", "PUT", "PUT"]
