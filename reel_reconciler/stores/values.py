"""Firestore documents and values on the wire: raw protobufs to Python and back, field paths.

Documents are decoded straight from the raw protobuf (proto-plus's `Type.pb(instance)`):
wrapping every value in proto-plus on the way costs a sweep more than the read itself
(bench/RESULTS.md). Values decode as the client library's `to_dict()` gives them, so the
policy sees the same Python whichever path read a document; references, which the library
ties to a client, decode to a `Reference`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore import GeoPoint
from google.cloud.firestore_v1.types import document as document_types
from google.protobuf import struct_pb2, timestamp_pb2

RawValue = Any
"""A raw `google.firestore.v1.Value` protobuf (protobuf's classes are untyped here)."""

_VALUE = document_types.Value.pb()
_SCALARS = frozenset({"string_value", "integer_value", "boolean_value", "double_value",
                      "bytes_value"})
"""Value kinds that decode to the protobuf's own Python value: most of a document."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIMPLE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


@dataclass(frozen=True)
class Document:
    """A document as read: id, fields (None if absent) and the server's update time."""

    id: str
    data: Mapping[str, Any] | None
    update_time: datetime


@dataclass(frozen=True)
class Reference:
    """A reference value: the full name of the document it points to."""

    name: str

    @property
    def path(self) -> str:
        """The document's path inside its database, as the client's references have it."""
        return self.name.split("/documents/", 1)[1]


def by_project(documents: Iterable[Document]) -> dict[str, list[Document]]:
    """Job documents grouped by their `projectId`, in the order given; those without a
    string one are left out."""
    found: dict[str, list[Document]] = defaultdict(list)
    for doc in documents:
        owner = doc.data.get("projectId") if doc.data else None
        if isinstance(owner, str):
            found[owner].append(doc)
    return found


def timestamp(raw: Any) -> datetime:
    """A `Timestamp` protobuf, exact (an update time is a write precondition): a plain UTC
    datetime when it fits in microseconds, as Firestore's do, much cheaper than
    `DatetimeWithNanoseconds`, which carries any finer one."""
    if raw.nanos % 1000:
        stamp: datetime = DatetimeWithNanoseconds.from_timestamp_pb(raw)  # type: ignore[no-untyped-call]
        return stamp
    return _EPOCH + timedelta(seconds=raw.seconds, microseconds=raw.nanos // 1000)


def timestamp_pb(stamp: datetime) -> Any:
    """The `Timestamp` protobuf of a datetime (naive ones are UTC), nanoseconds kept."""
    if isinstance(stamp, DatetimeWithNanoseconds):
        return stamp.timestamp_pb()  # type: ignore[no-untyped-call]
    raw = timestamp_pb2.Timestamp()
    raw.FromDatetime(stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC))
    return raw


def decode(value: RawValue) -> Any:
    """A raw `Value` as Python."""
    kind = value.WhichOneof("value_type")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind == "map_value":
        return {name: decode(item) for name, item in value.map_value.fields.items()}
    if kind == "array_value":
        return [decode(item) for item in value.array_value.values]
    if kind == "timestamp_value":
        return timestamp(value.timestamp_value)
    if kind == "null_value" or kind is None:
        return None
    if kind == "geo_point_value":
        return GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    if kind == "reference_value":
        return Reference(value.reference_value)
    return getattr(value, kind)


def decoded(raw: Any) -> Document:
    """A raw `Document` protobuf."""
    return Document(id=raw.name.rpartition("/")[2],
                    data={name: decode(value) for name, value in raw.fields.items()},
                    update_time=timestamp(raw.update_time))


def encode(value: Any) -> RawValue:
    """Python as a raw `Value`, as the client library encodes it."""
    raw = _VALUE()
    if value is None:
        raw.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        raw.boolean_value = value
    elif isinstance(value, int):
        raw.integer_value = value
    elif isinstance(value, float):
        raw.double_value = value
    elif isinstance(value, str):
        raw.string_value = value
    elif isinstance(value, bytes):
        raw.bytes_value = value
    elif isinstance(value, datetime):
        raw.timestamp_value.CopyFrom(timestamp_pb(value))
    elif isinstance(value, Mapping):
        encode_into(raw.map_value.fields, value)
        raw.map_value.SetInParent()  # an empty map is a map, not an unset value
    elif isinstance(value, list | tuple):
        raw.array_value.values.extend(encode(item) for item in value)
        raw.array_value.SetInParent()
    elif isinstance(value, GeoPoint):
        raw.geo_point_value.latitude = value.latitude
        raw.geo_point_value.longitude = value.longitude
    elif isinstance(value, Reference):
        raw.reference_value = value.name
    else:
        raise TypeError(f"cannot store a {type(value).__name__} in Firestore: {value!r}")
    return raw


def encode_into(target: Any, fields: Mapping[str, Any]) -> None:
    """Encode `fields` into a protobuf map of `Value`s (a document's or a map's fields)."""
    for name, item in fields.items():
        target[name].CopyFrom(encode(item))


def field_path(name: str) -> str:
    """A top-level field name as a field path: backquoted unless a plain identifier."""
    if _SIMPLE_NAME.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
