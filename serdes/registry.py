"""Client of a Confluent-compatible schema registry REST API (Apicurio's ccompat, Confluent).

Errors are split by what the caller must do: ``SchemaNotFoundError`` (permanent: the
record goes to the dead-letter topic), ``SchemaRejectedError`` (permanent: fix the
schema), ``RegistryUnavailableError`` (transient: retried here with exponential backoff,
then raised so the caller retries later; never a reason to dead-letter). Schemas by id
are immutable, so they are cached forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from config.errors import (
    RegistryUnavailableError,
    SchemaNotFoundError,
    SchemaRejectedError,
)
from config.settings import RegistrySettings

Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A subject version as the registry reports it."""

    subject: str
    version: int
    schema_id: int
    schema: str


class RegistryClient:
    """Synchronous registry client with retries and an id cache. Use as a context manager."""

    def __init__(self, settings: RegistrySettings, *, backoff_s: float | None = None) -> None:
        self._settings = settings
        self._backoff_s = settings.backoff_initial_s if backoff_s is None else backoff_s
        self._backoff_max_s = settings.backoff_max_s
        self._http = httpx.Client(
            base_url=settings.confluent_url,
            timeout=settings.timeout_s,
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
        )
        self._by_id: dict[int, str] = {}
        self._by_global_id: dict[int, str] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- reads ------------------------------------------------------------------------
    def schema_by_id(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id`` (cached: ids never change)."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        body = self._request("GET", f"/schemas/ids/{schema_id}", what=f"schema id {schema_id}")
        schema = str(body["schema"])
        self._by_id[schema_id] = schema
        return schema

    def schema_by_global_id(self, global_id: int) -> str:
        """The schema text of an Apicurio global id (Apicurio's own API; cached forever)."""
        cached = self._by_global_id.get(global_id)
        if cached is not None:
            return cached
        url = f"{self._settings.apicurio_v2_url}/ids/globalIds/{global_id}"
        body = str(self._request("GET", url, what=f"global id {global_id}", raw=True))
        self._by_global_id[global_id] = body
        return body

    def latest(self, subject: str) -> RegisteredSchema:
        """The newest version of ``subject``."""
        body = self._request(
            "GET", f"/subjects/{quote(subject, safe='')}/versions/latest", what=f"subject {subject}"
        )
        return RegisteredSchema(subject, int(body["version"]), int(body["id"]), str(body["schema"]))

    def subjects(self) -> list[str]:
        return [str(s) for s in self._request("GET", "/subjects", what="subject list")]

    def compatibility(self, subject: str) -> str:
        body = self._request(
            "GET", f"/config/{quote(subject, safe='')}", what=f"compatibility of {subject}"
        )
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    # -- writes -----------------------------------------------------------------------
    def register(
        self, subject: str, schema: str, compatibility: Compatibility | None = None
    ) -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; returns its id (idempotent).

        With ``compatibility``, the subject's level is set first (or right after the first
        version, for a subject that does not exist yet), so the registry checks ``schema``
        against it; an incompatible schema raises ``SchemaRejectedError``.
        """
        if compatibility is None:
            return self._register(subject, schema)
        try:
            self._set_compatibility_racing(subject, compatibility)
        except SchemaNotFoundError:  # a new subject: its first version cannot conflict
            schema_id = self._register(subject, schema)
            self._set_compatibility_racing(subject, compatibility)
            return schema_id
        return self._register(subject, schema)

    def _set_compatibility_racing(self, subject: str, level: Compatibility) -> None:
        """``set_compatibility`` when another writer (a second worker starting at the same
        moment) may be creating the subject's rule: Apicurio then answers 409 "rule already
        exists" to one of them. Once the rule exists, setting it again updates it."""
        for attempt in range(5):
            try:
                self.set_compatibility(subject, level)
                return
            except SchemaRejectedError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _register(self, subject: str, schema: str) -> int:
        body = self._request(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            json={"schema": schema, "schemaType": "AVRO"},
            what=f"registration under {subject}",
        )
        schema_id = int(body["id"])
        self._by_id[schema_id] = schema
        return schema_id

    def set_compatibility(self, subject: str, level: Compatibility) -> None:
        self._request(
            "PUT",
            f"/config/{quote(subject, safe='')}",
            json={"compatibility": level},
            what=f"compatibility of {subject}",
        )

    def delete_subject(self, subject: str) -> None:
        """Delete a subject and its versions (soft, then permanent)."""
        path = f"/subjects/{quote(subject, safe='')}"
        self._request("DELETE", path, what=f"subject {subject}")
        self._request("DELETE", path, params={"permanent": "true"}, what=f"subject {subject}")

    # -- transport --------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, what: str, raw: bool = False, **kwargs: Any
    ) -> Any:
        attempts = self._settings.max_retries + 1
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self._backoff_s * 2 ** (attempt - 1), self._backoff_max_s))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            return self._decode(response, what, raw=raw)
        raise RegistryUnavailableError(
            f"schema registry at {self._settings.confluent_url} unreachable for {what} after "
            f"{attempts} attempts ({last_error}); is it running? (`bitvelocity stack status`)"
        )

    @staticmethod
    def _decode(response: httpx.Response, what: str, *, raw: bool = False) -> Any:
        if response.status_code == 404:
            raise SchemaNotFoundError(f"registry has no {what}: {response.text[:200]}")
        if response.status_code == 409:
            raise SchemaRejectedError(
                f"registry rejected {what}: the schema is incompatible with the versions "
                f"already registered under the subject's compatibility level "
                f"({_message(response)}); give new fields a default, or register the "
                "breaking change under a new subject"
            )
        if response.status_code == 422:
            raise SchemaRejectedError(
                f"registry rejected {what} as invalid ({_message(response)}); fix the schema"
            )
        if response.status_code >= 400:
            raise SchemaRejectedError(
                f"registry answered HTTP {response.status_code} for {what}: {response.text[:300]}"
            )
        if raw:
            return response.text
        return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    """The registry's own error text (Confluent API: ``{"error_code", "message"}``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:300]
    return response.text[:300]
