"""Social posts into MongoDB ``posts``: bulk conditional upserts, newest version wins.

Each post is one document with ``_id`` = post id. A write is
``replace_one({_id, version < v}, doc, upsert=True)``: it replaces an older version,
inserts a missing post, and for a post already at ``v`` or newer the filter matches
nothing, so the upsert's insert collides on ``_id`` (duplicate key, code 11000) and
nothing changes. That error is the expected answer to a stale or redelivered version,
counted as ``stale``. So redelivery and reordering are harmless, and a single-document
operation suffices: FerretDB v1 has no multi-document transactions and none is needed.
Within a batch only each post's highest version is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from config.errors import PermanentError, TransientError
from config.settings import MongoSettings

POSTS = "posts"
DUPLICATE_KEY = 11000

#: The queries the indexes serve: an author's feed, a hashtag's feed, a user's mentions,
#: recent posts.
POST_INDEXES = (
    IndexModel([("author_id", ASCENDING), ("created_at", DESCENDING)], name="author_recent"),
    IndexModel(
        [("content.hashtags", ASCENDING), ("created_at", DESCENDING)], name="hashtag_recent"
    ),
    IndexModel([("content.mentions", ASCENDING)], name="mentions"),
    IndexModel([("created_at", DESCENDING)], name="recent"),
)


class MongoUnavailableError(TransientError):
    """The MongoDB server did not take a write (down, restarting, timed out): retry."""


class PostWriteRejectedError(PermanentError):
    """The server refused a post for a reason other than a newer version being stored."""


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    applied: int
    stale: int


def post_document(record: dict[str, Any]) -> dict[str, Any]:
    """The ``posts`` document of one decoded ``SocialPost`` (snake_case, ``_id`` = post id)."""
    content = record["content"]
    return {
        "_id": record["postId"],
        "author_id": record["authorId"],
        "content": {
            "text": content["text"],
            "media": [dict(m) for m in content["media"]],
            "hashtags": list(content["hashtags"]),
            "mentions": list(content["mentions"]),
        },
        "engagement": dict(record["engagement"]),
        "created_at": record["createdAt"],
        "created_by": record["createdBy"],
        "updated_at": record["updatedAt"],
        "updated_by": record["updatedBy"],
        "deleted_at": record["deletedAt"],
        "version": record["version"],
        "trace_id": record["traceId"],
    }


def newest_per_post(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the highest version of each post (order of first appearance)."""
    newest: dict[str, dict[str, Any]] = {}
    for document in documents:
        held = newest.get(document["_id"])
        if held is None or document["version"] > held["version"]:
            newest[document["_id"]] = document
    return list(newest.values())


def upsert_requests(documents: Sequence[dict[str, Any]]) -> list[ReplaceOne[dict[str, Any]]]:
    return [
        ReplaceOne({"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True)
        for d in newest_per_post(documents)
    ]


class PostsWriter:
    """``start()`` connects and creates the indexes; ``upsert`` writes one batch."""

    def __init__(self, settings: MongoSettings, database: str | None = None) -> None:
        self._settings = settings
        self.database = database or settings.database
        self._client: AsyncIOMotorClient[dict[str, Any]] | None = None

    @property
    def collection(self) -> AsyncIOMotorCollection[dict[str, Any]]:
        if self._client is None:
            raise PermanentError("PostsWriter used before start()")
        return self._client[self.database][POSTS]

    async def start(self) -> None:
        timeout_ms = int(self._settings.timeout_s * 1000)
        self._client = AsyncIOMotorClient(
            self._settings.uri(),
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 3,
            retryWrites=False,  # FerretDB v1 has no retryable writes; we retry the batch
            tz_aware=True,
        )
        try:
            await self.collection.create_indexes(list(POST_INDEXES))
        except (ConnectionFailure, OperationFailure) as exc:
            raise MongoUnavailableError(
                f"MongoDB at {self._settings.host}:{self._settings.port} is not reachable or "
                f"refused the indexes ({exc}); is `bitvelocity stack up --with-scaleout` up?"
            ) from exc

    async def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    async def upsert(self, documents: Sequence[dict[str, Any]]) -> UpsertOutcome:
        """Apply each post's version unless the store holds the same or a newer one."""
        requests = upsert_requests(documents)
        if not requests:
            return UpsertOutcome(0, 0)
        try:
            await self.collection.bulk_write(requests, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                raise PostWriteRejectedError(
                    f"{len(other)} of {len(requests)} posts refused by {self.database}.{POSTS} "
                    f"(first: {other[0].get('code')}: {other[0].get('errmsg')})"
                ) from exc
            return UpsertOutcome(len(requests) - len(errors), len(errors))
        except PyMongoError as exc:  # connection lost, timeouts, server restarting
            raise MongoUnavailableError(
                f"writing {len(requests)} posts into {self.database}.{POSTS} failed: {exc}"
            ) from exc
        return UpsertOutcome(len(requests), 0)

    async def count(self) -> int:
        return int(await self.collection.count_documents({}))
