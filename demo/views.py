"""The demo's look at the web views: their URLs, a ready ``curl`` line, and one real answer.

The token never appears on screen: the ``curl`` line reads it from ``$BV_WEB__TOKEN``, the
variable the worker itself reads it from, so the line works as printed in the same shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from config.settings import Settings


@dataclass(frozen=True)
class ViewsAnswer:
    urls: list[str]
    curl: str
    status: int
    answer: Any

    @property
    def ok(self) -> bool:
        return self.status == 200


def view_urls(settings: Settings, customer_id: int) -> list[str]:
    base = f"http://{settings.web.host}:{settings.web.port}"
    return [
        f"{base}/features/customers/{customer_id}",
        f"{base}/revenue/hourly?currency=USD",
        f"{base}/health",
    ]


def curl_line(settings: Settings, url: str) -> str:
    header = "" if settings.web.token is None else '-H "Authorization: Bearer $BV_WEB__TOKEN" '
    return f"curl -s {header}'{url}'"


async def ask_views(settings: Settings, customer_id: int) -> ViewsAnswer:
    """The URLs, and the answer of the first (one customer's features) from the running views."""
    urls = view_urls(settings, customer_id)
    token = settings.web.token
    headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(urls[0], headers=headers)
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text[:200]
    return ViewsAnswer(urls, curl_line(settings, urls[0]), response.status_code, answer)
