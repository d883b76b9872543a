"""Our own Avro schemas (``serdes/schemas/*.avsc``): loaded once, registered at start.

Each derived topic's value subject (``<topic>-value``, TopicNameStrategy) gets its schema
with the configured compatibility (BACKWARD by default, DESIGN.md section 4), so a change
that would break existing readers is refused by the registry before anything is produced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from config.settings import Settings
from serdes.avro import parse_schema
from serdes.registry import Compatibility, RegistryClient

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
#: OrderEvent has no topic in DESIGN.md yet; this is where our producers publish it.
ORDER_EVENTS_TOPIC = "order-events"


@dataclass(frozen=True, slots=True)
class OwnSchema:
    name: str
    text: str

    @property
    def parsed(self) -> Any:
        return _parsed(self.text)


@cache
def _parsed(text: str) -> Any:
    return parse_schema(text)


@cache
def load(name: str) -> OwnSchema:
    """The schema in ``serdes/schemas/<name>.avsc`` as compact JSON text."""
    path = SCHEMA_DIR / f"{name}.avsc"
    text = json.dumps(json.loads(path.read_text(encoding="utf-8")), separators=(",", ":"))
    schema = OwnSchema(name, text)
    _ = schema.parsed  # fail at load, not at first use, on an invalid file
    return schema


def subjects(settings: Settings) -> dict[str, str]:
    """Value subject -> schema name, for every derived topic we produce."""
    topics = settings.topics
    return {
        f"{ORDER_EVENTS_TOPIC}-value": "OrderEvent",
        f"{topics.hourly_revenue}-value": "HourlyRevenue",
        f"{topics.customer_features}-value": "CustomerFeatures",
        f"{topics.product_updates}-value": "ProductUpdate",
        f"{topics.chat_messages}-value": "ChatMessage",
        f"{topics.device_telemetry}-value": "DeviceTelemetry",
        f"{topics.social_posts}-value": "SocialPost",
    }


def register_all(settings: Settings, registry: RegistryClient) -> dict[str, int]:
    """Register every own schema under its subject (idempotent); subject -> schema id."""
    level: Compatibility = settings.registry.compatibility
    return {
        subject: registry.register(subject, load(name).text, level)
        for subject, name in subjects(settings).items()
    }
