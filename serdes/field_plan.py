"""Per-schema field plans: which columns of a row need converting, and how, compiled once.

Inspecting a schema per record is what makes generic decoders slow. A plan is compiled
once per writer schema (Avro: per registry id; JSON: per distinct schema) and is a tuple
of ``(column, converter)`` for the columns whose decoded value is not yet the Python
value we want: semantic types, and columns PostgreSQL may leave out as unchanged TOAST
(text, bytes, arrays), whose placeholder becomes ``UNCHANGED``. Columns already right
(int, float, bool, enum text, decimals fastavro converted) are not in the plan at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from typing import Any
from uuid import UUID

from serdes import logical_types as lt
from serdes.logical_types import (
    PLACEHOLDER,
    PLACEHOLDER_BYTES,
    PLACEHOLDER_INT_LIST,
    UNCHANGED,
    Converter,
    LogicalTypeError,
)

RowPlan = tuple[tuple[str, Converter], ...]

#: Semantic types stored as strings that PostgreSQL can TOAST (placeholder possible).
_TOASTABLE_NAMES = frozenset({"io.debezium.data.Json", "io.debezium.data.Xml", None})


def _uuid_placeholder() -> str:
    # Java's UUID.nameUUIDFromBytes(placeholder) is an MD5 name-based UUID (version 3)
    # with no namespace; Python's uuid3 prepends a namespace, so build it from the digest.
    digest = bytearray(hashlib.md5(PLACEHOLDER_BYTES, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x30
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(UUID(bytes=bytes(digest)))


UUID_ARRAY_PLACEHOLDER = _uuid_placeholder()


def _unchanged_text(value: Any) -> Any:
    return UNCHANGED if value == PLACEHOLDER else value


def _unchanged_bytes(value: Any) -> Any:
    return UNCHANGED if value == PLACEHOLDER_BYTES else value


def _toast_then(convert: Converter) -> Converter:
    def converter(value: Any) -> Any:
        if value == PLACEHOLDER:
            return UNCHANGED
        return convert(value)

    return converter


def _array(element: Converter | None, element_kind: str) -> Converter:
    """Arrays: the placeholder in its array spelling, then each non-null element."""
    if element_kind == "int":
        placeholder: list[Any] = PLACEHOLDER_INT_LIST
    elif element_kind == "uuid":
        placeholder = [UUID_ARRAY_PLACEHOLDER]
    else:
        placeholder = [PLACEHOLDER]

    if element is None:

        def plain(value: list[Any]) -> Any:
            return UNCHANGED if value == placeholder else value

        return plain

    def convert(value: list[Any]) -> Any:
        if value == placeholder:
            return UNCHANGED
        return [None if item is None else element(item) for item in value]

    return convert


def _semantic(name: str | None, parameters: Mapping[str, Any]) -> Converter | None:
    """The converter of a semantic type, or None when the value is already right."""
    if name == lt.DECIMAL_NAME:
        return lt.decimal_converter(int(parameters.get("scale", 0)))
    if name is not None and name in lt.BY_NAME:
        return lt.BY_NAME[name]
    return None


# -- Avro ----------------------------------------------------------------------------------
def _strip_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        return others[0] if len(others) == 1 else avro_type
    return avro_type


def _avro_field(avro_type: Any, named: MutableMapping[str, Any]) -> tuple[Converter | None, str]:
    """Converter of one Avro field type and its kind (int/uuid/other, for array placeholders)."""
    avro_type = _strip_null(avro_type)
    if isinstance(avro_type, str):
        if avro_type in named:
            avro_type = named[avro_type]
        elif avro_type == "string":
            return _unchanged_text, "text"
        elif avro_type == "bytes":
            return _unchanged_bytes, "bytes"
        elif avro_type in ("int", "long"):
            return None, "int"
        else:
            return None, "other"
    if isinstance(avro_type, list):
        return None, "other"  # a real union: left as fastavro gives it
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in ("record", "enum", "fixed") and "name" in avro_type:
            full = _full_name(avro_type)
            named[full] = avro_type
            named[avro_type["name"]] = avro_type
        name = avro_type.get("connect.name")
        if avro_type.get("logicalType") in lt.FASTAVRO_LOGICAL_TYPES:
            return None, "other"
        if kind == "array":
            element, element_kind = _avro_field(avro_type["items"], named)
            if element in (_unchanged_text, _unchanged_bytes):
                element = None  # the placeholder is checked on the whole array
            return _array(element, element_kind), "array"
        parameters = avro_type.get("connect.parameters") or {}
        if name == lt.DECIMAL_NAME and "scale" in avro_type:
            parameters = {"scale": avro_type["scale"]}
        converter = _semantic(name, parameters)
        if converter is not None:
            if name == "io.debezium.data.Uuid":
                return converter, "uuid"
            if kind == "string" and name in _TOASTABLE_NAMES:
                return _toast_then(converter), "text"
            return converter, "other"
        if kind == "string" and name in _TOASTABLE_NAMES:
            return _unchanged_text, "text"
        if kind == "bytes":
            return _unchanged_bytes, "bytes"
        if kind in ("int", "long"):
            return None, "int"
    return None, "other"


def _full_name(record: Mapping[str, Any]) -> str:
    name = str(record["name"])
    namespace = record.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def compile_avro_row(record: Mapping[str, Any], named: MutableMapping[str, Any]) -> RowPlan:
    """The plan of an Avro record schema (a Debezium ``Value`` or ``Key``)."""
    plan: list[tuple[str, Converter]] = []
    for field in record["fields"]:
        converter, _ = _avro_field(field["type"], named)
        if converter is not None:
            plan.append((field["name"], converter))
    return tuple(plan)


# -- Kafka Connect JSON schemas ------------------------------------------------------------
def _connect_field(field: Mapping[str, Any]) -> tuple[Converter | None, str]:
    kind = field.get("type")
    name = field.get("name")
    parameters = field.get("parameters") or {}
    if kind == "array":
        element, element_kind = _connect_field(field.get("items") or {})
        if element in (_unchanged_text, _unchanged_bytes_json):
            element = None if element is _unchanged_text else lt.bytes_from_base64
        return _array(element, element_kind), "array"
    converter = _semantic(name, parameters)
    if converter is not None:
        if name == "io.debezium.data.Uuid":
            return converter, "uuid"
        if kind == "string" and name in _TOASTABLE_NAMES:
            return _toast_then(converter), "text"
        return converter, "other"
    if kind == "string" and name in _TOASTABLE_NAMES:
        return _unchanged_text, "text"
    if kind == "bytes":
        return _unchanged_bytes_json, "bytes"
    if kind in ("int8", "int16", "int32", "int64"):
        return None, "int"
    return None, "other"


def _unchanged_bytes_json(value: Any) -> Any:
    if value == lt.PLACEHOLDER_BASE64:
        return UNCHANGED
    return lt.bytes_from_base64(value)


def compile_connect_row(struct: Mapping[str, Any]) -> RowPlan:
    """The plan of a Kafka Connect JSON ``struct`` schema (``schemas.enable=true``)."""
    plan: list[tuple[str, Converter]] = []
    for field in struct.get("fields") or ():
        converter, _ = _connect_field(field)
        if converter is not None:
            plan.append((field["field"], converter))
    return tuple(plan)


def compile_column_types(columns: Mapping[str, str | tuple[str, Mapping[str, Any]]]) -> RowPlan:
    """A plan from a hand-written type map, for schemaless JSON (``schemas.enable=false``).

    ``columns`` maps a column to a semantic name, or to ``(name, parameters)`` for decimals:
    ``{"amount": ("org.apache.kafka.connect.data.Decimal", {"scale": 2}), "placed_at":
    "io.debezium.time.MicroTimestamp", "body": "string", "blob": "bytes"}``.
    """
    plan: list[tuple[str, Converter]] = []
    for column, spec in columns.items():
        name, parameters = (spec, {}) if isinstance(spec, str) else spec
        if name == "string":
            field: dict[str, Any] = {"type": "string"}
        elif name == "bytes":
            field = {"type": "bytes"}
        else:
            field = {"type": "string", "name": name, "parameters": parameters}
        converter, _ = _connect_field(field)
        if converter is not None:
            plan.append((column, converter))
    return tuple(plan)


# -- column defaults -----------------------------------------------------------------------
#: A column's value when PostgreSQL did not send it (key-only before-images), for the NOT NULL
#: columns that have a default: Debezium writes the default there (serdes/images.py).
RowDefaults = Mapping[str, Any]


def _converted_defaults(raw: dict[str, Any], plan: RowPlan) -> dict[str, Any]:
    """``raw`` defaults through the plan's converters; a default that does not convert is left
    out (its column is then compared with the zero values only)."""
    converters = dict(plan)
    defaults: dict[str, Any] = {}
    for column, value in raw.items():
        convert = converters.get(column)
        try:
            defaults[column] = value if convert is None or value is None else convert(value)
        except (LogicalTypeError, ValueError, TypeError, OverflowError):
            continue
    return defaults


def compile_avro_defaults(record: Mapping[str, Any], plan: RowPlan) -> RowDefaults:
    """Defaults of the required (non-union) fields of an Avro ``Value`` record, decoded."""
    raw: dict[str, Any] = {}
    for field in record["fields"]:
        avro_type = field["type"]
        if isinstance(avro_type, list) or "default" not in field:
            continue
        value = field["default"]
        if isinstance(avro_type, dict) and avro_type.get("logicalType") == "decimal":
            try:  # Avro JSON writes bytes defaults as a string of code points
                value = lt.decimal_from_bytes(value.encode("latin-1"), int(avro_type["scale"]))
            except (AttributeError, KeyError, ValueError, UnicodeEncodeError):
                continue
        raw[field["name"]] = value
    return _converted_defaults(raw, plan)


def compile_connect_defaults(struct: Mapping[str, Any], plan: RowPlan) -> RowDefaults:
    """Defaults of the required fields of a Kafka Connect JSON ``struct`` schema, decoded."""
    raw = {
        field["field"]: field["default"]
        for field in struct.get("fields") or ()
        if not field.get("optional") and "default" in field
    }
    return _converted_defaults(raw, plan)


# -- applying a plan -----------------------------------------------------------------------
def apply_row(plan: RowPlan, row: dict[str, Any]) -> dict[str, Any]:
    """Convert ``row`` in place following ``plan``; returns it. The hot loop: no lookups of
    the schema, only the planned columns, and absent/null values untouched."""
    column = ""
    try:
        for column, convert in plan:
            value = row.get(column)
            if value is not None:
                row[column] = convert(value)
    except LogicalTypeError:
        raise
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError) as exc:
        raise LogicalTypeError(
            f"column {column!r}: value {row.get(column)!r:.80} does not fit its type: {exc}"
        ) from exc
    return row
