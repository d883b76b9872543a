"""Redis from Debian on its own loopback port, password protected, append-only file on.

The AOF keeps the feature store and cache state across a Redis restart (the fault tests
restart it); ``appendfsync everysec`` bounds the loss window to a second.
"""

from __future__ import annotations

import redis

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
        password = r.password.get_secret_value()
        if password:
            lines.append(f"requirepass {password}")
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
        client = redis.Redis(
            host=r.host,
            port=r.port,
            password=r.password.get_secret_value() or None,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        try:
            if not client.ping():
                return None
            info = client.info("server")
            return f"Redis {info.get('redis_version', '?')}, AOF on"
        finally:
            client.close()
