"""Social posts into MongoDB ``posts``: bulk writes, a post's newest version wins.

Each post is one document with ``_id`` = post id. Per batch (only each post's highest
version is sent): every post is first inserted (``insert_many``, unordered); the store
refuses (duplicate key) exactly the posts it holds, and only their stored versions are
read (one ``$in`` query); held posts with an older version are replaced
(``replace_one({_id}, doc)`` in small unordered bulks). A redelivered or reordered (older)
version is therefore never written. Insert first, because FerretDB 1.24 answers ``$in``
by scanning the whole collection (0.2 s at 2,000 posts, 1.3 s at 8,000 here): a batch of
new posts, the common case, then costs no read at all.

The version check is a read before the write, not one atomic statement: it is safe
because a post's versions reach one writer at a time (the topic is keyed by post id, and
a partition has one owner in the group). An insert colliding with a concurrent insert
(duplicate key, 11000) is re-read and handled in the same call. Why not the usual single
statement, ``replace_one({_id, version < v}, doc, upsert=True)``: on FerretDB 1.24 (SQLite)
a filter beyond ``_id`` is evaluated by scanning the collection for every statement (37/s
at 2,000 documents, falling as it grows), and its expected duplicate-key error comes back
without ``nModified``, which pymongo cannot parse. ``docs/decisions/0011`` has the figures.
FerretDB v1 has no multi-document transactions; none of this needs one. ``PostsWriter`` is
a ``BatchSink`` of decoded ``SocialPost`` records (``sinks/contract.py``): ``write``.
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
from sinks.contract import SinkLifecycle

POSTS = "posts"
#: SQLite connections FerretDB 1.24 opens per database (``SetMaxOpenConns(100)``).
FERRETDB_CONNECTIONS = 100
#: Workers that may replace posts in one database at the same time, within the budget.
CONCURRENT_WRITERS = 8
#: Replaces per bulk (one ``update`` command). FerretDB 1.24 (SQLite) keeps the query of
#: every statement of an ``update`` command open until the command ends (a ``defer`` in its
#: per-statement loop), each holding one of the database's 100 connections, and needs one
#: more to write: a command of 100 statements, or commands of 50 from two workers at once,
#: wait for a connection forever (until the client's socket timeout). Replaces cost the
#: same per statement at 10 or 90 a bulk (~80/s here), so small bulks cost nothing.
REPLACE_CHUNK = 10
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


def replace_requests(documents: Sequence[dict[str, Any]]) -> list[ReplaceOne[dict[str, Any]]]:
    """Replaces by ``_id`` (FerretDB answers these from its primary key, not a scan)."""
    return [ReplaceOne({"_id": d["_id"]}, d) for d in documents]


def newer_than_held(
    documents: Sequence[dict[str, Any]], held: dict[Any, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(missing, newer)``: posts not stored at all, and posts stored at an older version."""
    missing = [d for d in documents if d["_id"] not in held]
    newer = [d for d in documents if d["_id"] in held and held[d["_id"]] < d["version"]]
    return missing, newer


def replace_chunks(documents: Sequence[dict[str, Any]]) -> list[Sequence[dict[str, Any]]]:
    """``documents`` in bulks of ``REPLACE_CHUNK`` (see there why so small)."""
    return [documents[i : i + REPLACE_CHUNK] for i in range(0, len(documents), REPLACE_CHUNK)]


def client_options(settings: MongoSettings) -> dict[str, Any]:
    """Bounded timeouts for every client of the store: a call never waits forever."""
    timeout_ms = int(settings.timeout_s * 1000)
    return {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "socketTimeoutMS": timeout_ms * 3,
        "retryWrites": False,  # FerretDB v1 has no retryable writes; we retry the batch
        "tz_aware": True,
    }


def motor_client(settings: MongoSettings) -> AsyncIOMotorClient[dict[str, Any]]:
    """A motor client with ``client_options``; bind it to the event loop that uses it."""
    return AsyncIOMotorClient(settings.uri(), **client_options(settings))


class PostsWriter(SinkLifecycle):
    """``start()`` connects and creates the indexes; ``write`` takes one batch of decoded
    posts, ``upsert`` one of documents."""

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
        self._client = motor_client(self._settings)
        try:
            # One index per command: FerretDB 1.24 drops the connection (a server-side
            # panic) when one createIndexes names two or more indexes that already exist.
            for index in POST_INDEXES:
                await self.collection.create_indexes([index])
        except (ConnectionFailure, OperationFailure) as exc:
            raise MongoUnavailableError(
                f"MongoDB at {self._settings.host}:{self._settings.port} is not reachable or "
                f"refused the indexes ({exc}); is `bitvelocity stack up --with-scaleout` up?"
            ) from exc

    async def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    async def write(self, batch: Sequence[dict[str, Any]]) -> int:
        """Apply each decoded post unless a same or newer version is stored; returns how
        many versions were applied (stale ones are taken, not counted)."""
        outcome = await self.upsert([post_document(record) for record in batch])
        return outcome.applied

    async def upsert(self, documents: Sequence[dict[str, Any]]) -> UpsertOutcome:
        """Apply each post's version unless the store holds the same or a newer one."""
        newest = newest_per_post(documents)
        if not newest:
            return UpsertOutcome(0, 0)
        try:
            applied, pending = await self._insert(newest)  # refused: the posts it holds
            for _ in range(3):  # a collision with a concurrent insert is re-read once more
                if not pending:
                    break
                held = await self._held_versions(pending)
                missing, newer = newer_than_held(pending, held)
                inserted, collided = await self._insert(missing)
                applied += inserted + await self._replace(newer)
                pending = collided
        except PyMongoError as exc:  # connection lost, timeouts, server restarting
            raise MongoUnavailableError(
                f"writing {len(newest)} posts into {self.database}.{POSTS} failed: {exc}"
            ) from exc
        if pending:
            raise MongoUnavailableError(
                f"{len(pending)} posts kept colliding with concurrent inserts; retrying the batch"
            )
        return UpsertOutcome(applied, len(newest) - applied)

    async def _held_versions(self, documents: list[dict[str, Any]]) -> dict[Any, int]:
        ids = [d["_id"] for d in documents]
        cursor = self.collection.find({"_id": {"$in": ids}}, {"version": 1})
        return {d["_id"]: int(d["version"]) async for d in cursor}

    async def _insert(self, documents: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Insert new posts; returns how many and those a concurrent writer inserted first."""
        if not documents:
            return 0, []
        try:
            await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            _raise_unless_duplicates(errors, len(documents), self.database)
            collided = [documents[e["index"]] for e in errors]
            return len(documents) - len(collided), collided
        return len(documents), []

    async def _replace(self, documents: list[dict[str, Any]]) -> int:
        """Replace in small bulks (``REPLACE_CHUNK``: larger ones can deadlock FerretDB); a
        bulk that went through is not redone on a retry (its posts then hold the version)."""
        modified = 0
        for chunk in replace_chunks(documents):
            try:
                result = await self.collection.bulk_write(replace_requests(chunk), ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                _raise_unless_duplicates(errors, len(chunk), self.database)
                modified += int(exc.details.get("nModified", 0))
                continue
            modified += int(result.modified_count)
        return modified

    async def count(self) -> int:
        return int(await self.collection.count_documents({}))


def _raise_unless_duplicates(errors: list[dict[str, Any]], total: int, database: str) -> None:
    other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
    if other:
        raise PostWriteRejectedError(
            f"{len(other)} of {total} posts refused by {database}.{POSTS} "
            f"(first: {other[0].get('code')}: {other[0].get('errmsg')})"
        )
