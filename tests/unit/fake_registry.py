"""An in-memory stand-in for the registry client, for unit tests of pure decoding logic."""

from __future__ import annotations

import json
from typing import Any

from config.errors import RegistryUnavailableError, SchemaNotFoundError


class StaticRegistry:
    def __init__(self, schemas: dict[int, Any] | None = None) -> None:
        self.schemas = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in (schemas or {}).items()
        }
        self.down = False
        self.calls = 0

    def schema_by_id(self, schema_id: int) -> str:
        self.calls += 1
        if self.down:
            raise RegistryUnavailableError("registry down (test)")
        try:
            return self.schemas[schema_id]
        except KeyError:
            raise SchemaNotFoundError(f"no schema id {schema_id}") from None

    schema_by_global_id = schema_by_id
