"""The one rule every HTTP endpoint of a worker follows (web views and ``/metrics``).

Bind to loopback unless configured otherwise (``BV_WEB__HOST``); beyond loopback a token is
required (``config.settings.WebSettings`` refuses the combination without one); with a token
set, a request without ``Authorization: Bearer <token>`` gets 401, compared in constant time.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from config.settings import is_loopback

__all__ = ["authorized", "is_loopback"]


def authorized(header: str | bytes | None, token: SecretStr | None) -> bool:
    """True when no token is configured, or ``header`` is exactly ``Bearer <token>``."""
    if token is None:
        return True
    if header is None:
        return False
    given = header if isinstance(header, bytes) else header.encode()
    return hmac.compare_digest(given, f"Bearer {token.get_secret_value()}".encode())
