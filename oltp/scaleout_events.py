"""Seeded chat, telemetry and social-post events for the scale-out stores (pure, no I/O).

Same seed and start, same events. Every chat message has its own TIMEUUID and every reading
its own millisecond after ``start``, so N events are N distinct primary keys (the count a
store must end with); runs with later starts (the demo uses now) add new keys.
Posts are emitted as versions: each post first at version 1, then updates that raise the
version and the engagement counters, so the expected store state is "highest version of
each post". Records are dicts in the shape of the Avro schemas ``ChatMessage``,
``DeviceTelemetry`` and ``SocialPost``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: 100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
SENSOR_TYPES = ("temperature", "humidity", "pressure", "battery")
_WORDS = ("ship", "deal", "cart", "order", "hello", "price", "late", "great", "new", "sale")


@dataclass(frozen=True, slots=True)
class ScaleoutLoad:
    """How many events of each kind to make, and from which seed."""

    seed: int = 42
    chat_messages: int = 0
    telemetry: int = 0
    posts: int = 0
    post_updates: int = 0
    rooms: int = 20
    devices: int = 50
    users: int = 100
    #: Event time of the first event; later events follow it in small steps.
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)


def timeuuid(at: datetime, sequence: int, node: int) -> uuid.UUID:
    """A version-1 UUID for ``at`` (plus ``sequence`` x 100 ns, so equal times stay unique)."""
    ticks = int(at.timestamp() * 10_000_000) + _UUID_EPOCH_OFFSET + sequence
    time_low = ticks & 0xFFFFFFFF
    time_mid = (ticks >> 32) & 0xFFFF
    time_hi_version = ((ticks >> 48) & 0x0FFF) | (1 << 12)
    clock_seq = sequence & 0x3FFF
    return uuid.UUID(
        fields=(
            time_low,
            time_mid,
            time_hi_version,
            0x80 | (clock_seq >> 8),
            clock_seq & 0xFF,
            node,
        )
    )


def chat_events(load: ScaleoutLoad) -> list[dict[str, Any]]:
    rng = random.Random(f"chat-{load.seed}")  # noqa: S311 - a workload, not cryptography
    node = rng.getrandbits(47) | (1 << 40)  # multicast bit set: not a real MAC address
    events = []
    for i in range(load.chat_messages):
        at = load.start + timedelta(milliseconds=i)
        user = f"user-{rng.randrange(load.users)}"
        events.append(
            {
                "roomId": f"room-{rng.randrange(load.rooms)}",
                "messageTime": str(timeuuid(at, i, node)),
                "userId": user,
                "messageText": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8))),
                "metadata": {"client": rng.choice(("web", "ios", "android"))},
                "createdBy": user,
                "traceId": f"trace-chat-{load.seed}-{i}",
            }
        )
    return events


def telemetry_events(load: ScaleoutLoad) -> list[dict[str, Any]]:
    rng = random.Random(f"telemetry-{load.seed}")  # noqa: S311 - a workload, not cryptography
    return [
        {
            "deviceId": f"device-{rng.randrange(load.devices)}",
            "sensorType": rng.choice(SENSOR_TYPES),
            "timestamp": load.start + timedelta(milliseconds=i),
            "sensorValue": round(rng.uniform(-20.0, 120.0), 3),
            "traceId": f"trace-telemetry-{load.seed}-{i}",
        }
        for i in range(load.telemetry)
    ]


def post_events(load: ScaleoutLoad) -> list[dict[str, Any]]:
    """``posts`` first versions, then ``post_updates`` later versions of random posts."""
    rng = random.Random(f"posts-{load.seed}")  # noqa: S311 - a workload, not cryptography
    current: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i in range(load.posts):
        at = load.start + timedelta(seconds=i)
        author = f"user-{rng.randrange(load.users)}"
        post = {
            "postId": f"post-{load.seed}-{int(load.start.timestamp())}-{i}",
            "authorId": author,
            "content": {
                "text": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 20))),
                "media": [
                    {"type": "image", "url": f"https://cdn.example/p/{i}/{m}.jpg"}
                    for m in range(rng.randint(0, 2))
                ],
                "hashtags": sorted({f"#{rng.choice(_WORDS)}" for _ in range(rng.randint(0, 3))}),
                "mentions": sorted({f"@user-{rng.randrange(load.users)}" for _ in range(2)}),
            },
            "engagement": {"likes": 0, "shares": 0, "comments": 0, "views": 0},
            "createdAt": at,
            "createdBy": author,
            "updatedAt": at,
            "updatedBy": author,
            "deletedAt": None,
            "version": 1,
            "traceId": f"trace-post-{load.seed}-{i}",
        }
        current.append(post)
        events.append(post)
    for j in range(load.post_updates if current else 0):
        k = rng.randrange(len(current))
        previous = current[k]
        engagement = {
            name: count + rng.randint(0, 5) for name, count in previous["engagement"].items()
        }
        updated = {
            **previous,
            "engagement": engagement,
            "updatedAt": previous["updatedAt"] + timedelta(seconds=1),
            "updatedBy": "engagement-counter",
            "version": previous["version"] + 1,
            "traceId": f"trace-post-update-{load.seed}-{j}",
        }
        current[k] = updated
        events.append(updated)
    return events


def latest_posts(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The highest version of each post among ``events`` (what the store must hold)."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        held = latest.get(event["postId"])
        if held is None or event["version"] > held["version"]:
            latest[event["postId"]] = event
    return latest
