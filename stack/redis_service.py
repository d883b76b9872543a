"""Redis from Debian on its own loopback port, with ACL users, append-only file on.

Two users: ``default`` (every command, ``BV_REDIS__ADMIN_PASSWORD``: operators and this
module's probe) and the application's (``BV_REDIS__USERNAME``, ``BV_REDIS__PASSWORD``),
which reaches only keys and pub/sub channels under ``bv:`` and has no dangerous or admin
command (CONFIG, FLUSHALL, KEYS, DEBUG, SHUTDOWN, ...). So a leaked app password, or a bug,
can neither read other tenants' keys nor reconfigure or wipe the server.
The AOF keeps the feature store and cache state across a Redis restart (the fault tests
restart it); ``appendfsync everysec`` bounds the loss window to a second.
"""

from __future__ import annotations

import redis

from config.errors import ConfigurationError
from config.settings import REDIS_NAMESPACE, RedisSettings
from stack import process
from stack.base import Endpoint, Progress, Service
from stack.tools import redis_server


class RedisService(Service):
    name = "redis"
    description = "Redis (feature store, L2 cache)"

    @property
    def conf_path(self) -> str:
        return str(self.home / "redis.conf")

    def endpoints(self) -> list[Endpoint]:
        r = self.settings.redis
        return [Endpoint("resp", r.host, r.port, "BV_REDIS__PORT")]

    def prepare(self, progress: Progress) -> None:
        redis_server()
        self.home.mkdir(parents=True, exist_ok=True)
        r = self.settings.redis
        lines = [
            "# Written by `bitvelocity stack up` on every start; edit the settings, not this file.",
            f"bind {r.host}",
            f"port {r.port}",
            "protected-mode yes",
            f"dir {self.home}",
            "daemonize no",
            'logfile ""',
            'save ""',
            "appendonly yes",
            "appendfsync everysec",
            # Redis rewrites its process title; keep the config path in it so `stack down`
            # can tell our server from any other by its command line.
            'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
        ]
        lines += acl_rules(r)
        conf = self.home / "redis.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        conf.chmod(0o600)

    def start(self) -> None:
        process.spawn(
            [str(redis_server()), self.conf_path],
            log_path=self.log_path,
            pid_path=self.pid_path,
        )

    def probe(self) -> str | None:
        r = self.settings.redis
        try:
            return self._probe_as(r.admin_password.get_secret_value() or None)
        except redis.AuthenticationError:
            # A server started before the ACL existed still runs ``requirepass <app password>``.
            if self._probe_as(r.password.get_secret_value() or None) is None:
                raise
            return (
                "started with an outdated config (no ACL users): restart it with "
                "`bitvelocity stack down redis && bitvelocity stack up redis`"
            )

    def _probe_as(self, password: str | None) -> str | None:
        r = self.settings.redis
        client = redis.Redis(
            host=r.host, port=r.port, password=password, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            if not client.ping():
                return None
            info = client.info("server")
            return f"Redis {info.get('redis_version', '?')}, AOF on"
        finally:
            client.close()


#: What the application user may run: everything but the categories holding CONFIG,
#: FLUSHALL/FLUSHDB, KEYS, DEBUG, SHUTDOWN, MONITOR, ACL, REPLICAOF, MODULE, ...
APP_COMMANDS = "+@all -@dangerous -@admin"


def acl_rules(r: RedisSettings) -> list[str]:
    """``user`` directives of redis.conf; nothing when no password is configured.

    ``resetchannels`` and ``resetkeys`` start the app user from nothing, so the patterns
    below are all it has. Passwords come from ``credentials.env`` (URL-safe characters,
    no spaces); the file is written mode 0600.
    """
    admin, app = r.admin_password.get_secret_value(), r.password.get_secret_value()
    if any(char.isspace() for char in admin + app):
        raise ConfigurationError(
            "BV_REDIS__PASSWORD and BV_REDIS__ADMIN_PASSWORD must not contain spaces"
        )
    rules = []
    if admin:
        rules.append(f"user default on >{admin} ~* &* +@all")
    if app:
        if not admin:
            raise ConfigurationError(
                "BV_REDIS__ADMIN_PASSWORD must be set with BV_REDIS__PASSWORD (the app user "
                "is limited; the default user needs its own password)"
            )
        rules.append(
            f"user {r.username} on >{app} resetkeys ~{REDIS_NAMESPACE}* "
            f"resetchannels &{REDIS_NAMESPACE}* {APP_COMMANDS}"
        )
    return rules
