"""GCS adapter: list a project's prefix in pages; a metadata read only for claims elsewhere.

Read-only by construction: nothing here creates, rewrites or deletes an object.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import from_rfc3339
from google.cloud.storage.retry import DEFAULT_RETRY

from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.metrics import GCS_REQUESTS_TOTAL
from reel_reconciler.model import ObjectInfo
from reel_reconciler.model.identity import ReconcilerId
from reel_reconciler.stores import RequestLog
from reel_reconciler.stores.billing import SWEEP, current_pass, reading_for

_LIST_FIELDS = "items(name,size,updated,generation),nextPageToken"


class GcsStore:
    def __init__(self, settings: Settings, reconciler: ReconcilerId,
                 client: storage.Client | None = None) -> None:
        self.client = client or storage.Client(project=settings.gcp_project)
        self.bucket_name = settings.location.bucket
        self.page_size = settings.gcs_page_size
        self.timeout = settings.request_timeout
        self.retry = DEFAULT_RETRY.with_timeout(settings.retry_deadline)
        self.requests = RequestLog("gcs", GCS_REQUESTS_TOTAL, reconciler)

    def probe(self) -> None:
        """Fail fast at start on a bucket that does not exist or cannot be listed."""
        try:
            with self.requests.call("probe", self.bucket_name):
                blobs = self.client.list_blobs(self.bucket_name, max_results=1,
                                               timeout=self.timeout, retry=self.retry)
                list(blobs)
        except Exception as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                raise ConfigError(f"bucket {self.bucket_name!r} does not exist") from exc
            raise

    def any_under(self, prefix: str) -> bool:
        """Whether at least one object's name starts with `prefix` (one listing call)."""
        with self.requests.call("list", prefix):
            blobs = self.client.list_blobs(self.bucket_name, prefix=prefix, max_results=1,
                                           timeout=self.timeout, retry=self.retry)
            return any(True for _ in blobs)

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Every object under `prefix`; one request per page of `gcs_page_size` objects."""
        objects: list[ObjectInfo] = []
        with self.requests.call("list", prefix) as more:
            blobs = self.client.list_blobs(self.bucket_name, prefix=prefix,
                                           page_size=self.page_size, fields=_LIST_FIELDS,
                                           timeout=self.timeout, retry=self.retry)
            for number, page in enumerate(blobs.pages):
                if number:
                    more(1)
                objects.extend(ObjectInfo(b.name, int(b.size or 0), b.updated,
                                          int(b.generation or 0)) for b in page)
        return objects

    def listing(self, prefix: str, start: str | None = None,
                end: str | None = None) -> Iterator[list[ObjectInfo]]:
        """Every object under `prefix` in name order (from `start` inclusive to `end`
        exclusive, when given: one range of a ranged sweep), one page (one request) at a time.

        Items become `ObjectInfo` straight from the JSON resource: a sweep lists the whole
        bucket, and building a `Blob` per object would cost more than the request itself.
        """
        blobs = self.client.list_blobs(self.bucket_name, prefix=prefix,
                                       page_size=self.page_size, fields=_LIST_FIELDS,
                                       start_offset=start, end_offset=end,
                                       timeout=self.timeout, retry=self.retry)
        blobs.item_to_value = _object_info
        pages = blobs.pages
        trigger = current_pass(SWEEP)  # read on the sweep's own threads
        while blobs.page_number == 0 or blobs.next_page_token is not None:
            with reading_for(trigger), self.requests.call("list", prefix):
                page = next(pages, None)
                objects = list(page) if page is not None else []
            if page is None:
                return
            yield objects

    def stat(self, name: str) -> ObjectInfo | None:
        """Metadata of one object, or None if it does not exist (a 404, nothing else)."""
        with self.requests.call("get_metadata", name):
            blob = self.client.bucket(self.bucket_name).get_blob(name, timeout=self.timeout,
                                                                 retry=self.retry)
        if blob is None:
            return None
        return ObjectInfo(blob.name, int(blob.size or 0), blob.updated, int(blob.generation or 0))


def _timestamp(value: str) -> datetime:
    """RFC 3339 as `Blob.updated` parses it; `fromisoformat` is many times faster for the
    usual forms (up to microseconds, `Z`), api_core's parser (the one `Blob.updated` uses,
    published) handles the rest (nanoseconds, truncated to microseconds)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or len(value.rpartition(".")[2]) > 7:
        return from_rfc3339(value)  # type: ignore[no-any-return,no-untyped-call]
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def _object_info(_iterator: Any, item: dict[str, Any]) -> ObjectInfo:
    """A listed item as the policy sees it, `updated` parsed as `Blob.updated` parses it."""
    return ObjectInfo(item["name"], int(item.get("size") or 0), _timestamp(item["updated"]),
                      int(item.get("generation") or 0))
