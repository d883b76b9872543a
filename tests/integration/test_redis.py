"""Redis answers on its own port, requires its generated password, and survives restarts (AOF)."""

from __future__ import annotations

import secrets

import pytest
import redis

from config.settings import Settings


def test_a_key_round_trips_with_the_generated_password(settings: Settings) -> None:
    r = settings.redis
    client = redis.Redis(host=r.host, port=r.port, password=r.password.get_secret_value())
    key = f"bv:test:{secrets.token_hex(4)}"
    try:
        client.set(key, "value", ex=60)
        assert client.get(key) == b"value"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.delete(key)
        client.close()


def test_clients_without_the_password_are_refused(settings: Settings) -> None:
    client = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()
