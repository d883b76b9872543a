"""The KRaft cluster id never starts with "-" (the storage tool reads such an id as an option).

A CI run failed at `stack up` with "argument --cluster-id/-t: expected one argument": the
random id was "-_ydn5qCTg-udch-VKIaZA". One id in 64 starts with "-".
"""

from __future__ import annotations

import base64

from stack.kafka_service import kafka_cluster_id


def test_an_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    draws = iter([b"\xf8" + bytes(15), bytes(16)])  # base64url of 0xf8... starts with "-"
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().startswith("-")
    assert kafka_cluster_id(lambda: next(draws)) == "A" * 22


def test_a_random_id_is_22_url_safe_characters() -> None:
    ids = {kafka_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
