"""Firestore writes as `Write` protobufs, each with its precondition.

Every write the controller makes is guarded: an update applies only to the version of the
document we read (its update time), a create only where no document exists. Fields named in
`server_time` get the server's time of the commit, as the app's `serverTimestamp()` does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from google.cloud.firestore_v1.types import DocumentTransform, Write

from reel_reconciler.stores.values import encode_into, field_path, timestamp_pb

RawWrite = Any
"""A raw `google.firestore.v1.Write` protobuf."""

_WRITE = Write.pb()
_REQUEST_TIME = DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME


def _write(name: str, fields: Mapping[str, Any], server_time: Collection[str]) -> RawWrite:
    raw = _WRITE()
    raw.update.name = name
    encode_into(raw.update.fields, {key: value for key, value in fields.items()
                                    if key not in server_time})
    for key in server_time:
        transform = raw.update_transforms.add()
        transform.field_path = field_path(key)
        transform.set_to_server_value = _REQUEST_TIME
    return raw


def update(name: str, fields: Mapping[str, Any], server_time: Collection[str],
           read_update_time: datetime) -> RawWrite:
    """Set the top-level `fields` (a map replaces the whole map) of document `name`, only if
    its update time is still `read_update_time`; the rest of the document is kept. There is
    no blind variant: an update that may land on a version we did not read is not ours."""
    raw = _write(name, fields, server_time)
    raw.update_mask.field_paths.extend(field_path(key) for key in fields
                                       if key not in server_time)
    raw.update_mask.SetInParent()  # a mask of server times only still keeps the rest
    raw.current_document.update_time.CopyFrom(timestamp_pb(read_update_time))
    return raw


def create(name: str, fields: Mapping[str, Any], server_time: Collection[str]) -> RawWrite:
    """Create document `name`, only if it does not exist."""
    raw = _write(name, fields, server_time)
    raw.current_document.exists = False
    return raw
