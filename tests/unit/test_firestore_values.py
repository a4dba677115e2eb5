"""Values on the wire without a server: what the store encodes decodes back to itself, and
update times survive exactly (they are write preconditions). The emulator round trip, read
back through the client library, is in tests/integration/test_firestore_writes.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore import GeoPoint

from reel_reconciler.stores.values import (
    Reference,
    decode,
    encode,
    field_path,
    timestamp,
    timestamp_pb,
)

NAME = "projects/p/databases/(default)/documents/reel_maker_projects/other"


@pytest.mark.parametrize("value", [
    None, True, False, 0, -(2**63), 1.5, "clip ✓", b"\x00\xff", [], {}, [1, "two", None],
    {"a": {"b": [{"c": "deep"}]}, "empty": {}},
    datetime(2026, 11, 24, 6, 30, 1, 123456, tzinfo=UTC),
    GeoPoint(48.85, 2.35), Reference(NAME),
])
def test_a_value_decodes_to_what_was_encoded(value: Any) -> None:
    assert decode(encode(value)) == value


def test_tuples_are_arrays_and_naive_datetimes_utc() -> None:
    assert decode(encode((1, 2))) == [1, 2]
    assert decode(encode(datetime(2026, 1, 1))) == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        encode({1, 2})


def test_update_times_are_exact_to_the_nanosecond() -> None:
    fine = DatetimeWithNanoseconds(2026, 11, 24, 6, 30, 1, nanosecond=123456789,  # type: ignore[no-untyped-call]
                                   tzinfo=UTC)
    raw = timestamp_pb(fine)
    assert (raw.seconds, raw.nanos) == (int(fine.timestamp()), 123456789)
    back = timestamp(raw)
    assert isinstance(back, DatetimeWithNanoseconds)
    assert back.nanosecond == 123456789
    plain = timestamp(timestamp_pb(datetime(2026, 11, 24, 6, 30, 1, 5, tzinfo=UTC)))
    assert type(plain) is datetime
    assert plain.microsecond == 5


def test_references_have_the_clients_path() -> None:
    assert Reference(NAME).path == "reel_maker_projects/other"


@pytest.mark.parametrize(("name", "path"), [
    ("userId", "userId"), ("__name__", "__name__"), ("odd name", "`odd name`"),
    ("a.b", "`a.b`"), ("back`tick", "`back\\`tick`"), ("9lives", "`9lives`"),
])
def test_field_paths_quote_what_is_not_an_identifier(name: str, path: str) -> None:
    assert field_path(name) == path
