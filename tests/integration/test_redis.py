"""Redis answers on its own port, behind passwords, survives restarts (AOF), and its ACL holds.

The application logs in as an ACL user that reaches only keys and channels under ``bv:`` and
cannot run admin or dangerous commands; the ``default`` user needs the admin password.
Each test below fails if that protection is removed from ``stack/redis_service.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from config.settings import REDIS_NAMESPACE, Settings


@pytest.fixture
def app_client(settings: Settings) -> Iterator[redis.Redis]:
    """A client exactly as the application connects: the ACL user and its password."""
    r = settings.redis
    assert r.password.get_secret_value(), "the stack generates the app user's password"
    username, password = r.client_auth()
    client = redis.Redis(host=r.host, port=r.port, db=r.db, username=username, password=password)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[redis.Redis]:
    r = settings.redis
    client = redis.Redis(host=r.host, port=r.port, password=r.admin_password.get_secret_value())
    try:
        yield client
    finally:
        client.close()


def test_the_app_user_round_trips_a_key_in_its_namespace(app_client: redis.Redis) -> None:
    key = f"{REDIS_NAMESPACE}test:{secrets.token_hex(4)}"
    try:
        app_client.set(key, "value", ex=60)
        assert app_client.get(key) == b"value"
        assert app_client.acl_whoami() == "bv_app"
    finally:
        app_client.delete(key)


def test_the_server_keeps_an_append_only_file(admin_client: redis.Redis) -> None:
    assert admin_client.config_get("appendonly") == {"appendonly": "yes"}


def test_clients_without_a_password_are_refused(settings: Settings) -> None:
    client = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()


def test_the_app_password_does_not_open_the_default_user(settings: Settings) -> None:
    r = settings.redis
    client = redis.Redis(host=r.host, port=r.port, password=r.password.get_secret_value())
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()


@pytest.mark.parametrize("key", ["outside:key", "bvx:key", "BV:key", "features:customer:1"])
def test_the_app_user_cannot_touch_a_key_outside_its_namespace(
    app_client: redis.Redis, admin_client: redis.Redis, key: str
) -> None:
    admin_client.set(key, "secret", ex=60)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_client.get(key)
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_client.set(key, "overwritten")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_client.delete(key)
        # A script may not reach past the ACL either (the feature store and cache use Lua).
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_client.eval("return redis.call('GET', KEYS[1])", 1, key)
        assert admin_client.get(key) == b"secret"
    finally:
        admin_client.delete(key)


def test_the_app_user_publishes_and_subscribes_only_under_its_namespace(
    app_client: redis.Redis,
) -> None:
    assert app_client.publish(f"{REDIS_NAMESPACE}test:{secrets.token_hex(4)}", "x") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        app_client.publish("other-channel", "x")
    pubsub = app_client.pubsub()
    try:
        pubsub.subscribe("other-channel")  # the refusal arrives as the reply
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.get_message(timeout=5)
    finally:
        pubsub.close()


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "GET", "requirepass"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("BGREWRITEAOF",),
        ("CLIENT", "LIST"),
    ],
)
def test_the_app_user_cannot_run_admin_or_dangerous_commands(
    app_client: redis.Redis, admin_client: redis.Redis, command: tuple[str, ...]
) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        app_client.execute_command(*command)
    assert admin_client.ping()


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("SHUTDOWN", "NOSAVE"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("DEBUG", "SLEEP", "0"),
        ("MONITOR",),
    ],
)
def test_the_app_user_may_not_run_destructive_commands(
    settings: Settings, admin_client: redis.Redis, command: tuple[str, ...]
) -> None:
    """Asked with ACL DRYRUN, so a broken ACL fails this test without wiping the server."""
    verdict = admin_client.execute_command("ACL", "DRYRUN", settings.redis.username, *command)
    assert b"no permissions" in verdict, verdict
