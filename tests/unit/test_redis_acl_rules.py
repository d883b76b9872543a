"""Every Redis key and channel the app uses lies under ``bv:``, which its ACL user is limited to."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from cache.keys import KeySpace
from config.errors import ConfigurationError
from config.settings import REDIS_NAMESPACE, CacheSettings, FeatureSettings, RedisSettings
from stack.redis_service import APP_COMMANDS, acl_rules


def test_default_key_prefixes_and_channel_are_in_the_namespace() -> None:
    cache, features = CacheSettings(), FeatureSettings()
    for name in (cache.key_prefix, cache.channel, features.redis_prefix):
        assert name.startswith(REDIS_NAMESPACE)
    assert KeySpace(cache.key_prefix).pattern().startswith(REDIS_NAMESPACE)


@pytest.mark.parametrize(
    "build",
    [
        lambda: CacheSettings(key_prefix="cache"),
        lambda: CacheSettings(channel="invalidate"),
        lambda: FeatureSettings(redis_prefix="features:customer:"),
    ],
)
def test_a_prefix_or_channel_outside_the_namespace_is_a_setting_error(build: object) -> None:
    with pytest.raises(ValidationError, match="must start with 'bv:'"):
        build()  # type: ignore[operator]


def test_the_app_user_rule_limits_keys_channels_and_commands() -> None:
    rules = acl_rules(RedisSettings(password=SecretStr("app-pw"), admin_password=SecretStr("adm")))
    assert rules == [
        "user default on >adm ~* &* +@all",
        f"user bv_app on >app-pw resetkeys ~bv:* resetchannels &bv:* {APP_COMMANDS}",
    ]
    assert "-@dangerous" in APP_COMMANDS
    assert "-@admin" in APP_COMMANDS


def test_without_passwords_there_are_no_users_and_clients_send_no_auth() -> None:
    assert acl_rules(RedisSettings()) == []
    assert RedisSettings().client_auth() == (None, None)
    assert RedisSettings(password=SecretStr("pw")).client_auth() == ("bv_app", "pw")


def test_an_app_password_without_an_admin_password_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ADMIN_PASSWORD"):
        acl_rules(RedisSettings(password=SecretStr("app-pw")))


def test_a_password_with_a_space_cannot_inject_acl_rules() -> None:
    hostile = SecretStr("pw ~* +@all")
    with pytest.raises(ConfigurationError, match="spaces"):
        acl_rules(RedisSettings(password=hostile, admin_password=SecretStr("adm")))
    with pytest.raises(ValidationError):
        RedisSettings(username="bv_app ~* +@all")
