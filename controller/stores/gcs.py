"""GCS adapter: list a project's prefix in pages; a metadata read only for claims elsewhere.

Read-only by construction: nothing here creates, rewrites or deletes an object.
"""

from __future__ import annotations

import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from controller.config import ConfigError, Settings
from controller.metrics import GCS_REQUESTS_TOTAL
from controller.model import ObjectInfo
from controller.stores import RequestLog

_LIST_FIELDS = "items(name,size,updated),nextPageToken"


class GcsStore:
    def __init__(self, settings: Settings, reconciler: str = "cli",
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
                objects.extend(ObjectInfo(b.name, int(b.size or 0), b.updated) for b in page)
        return objects

    def stat(self, name: str) -> ObjectInfo | None:
        """Metadata of one object, or None if it does not exist (a 404, nothing else)."""
        with self.requests.call("get_metadata", name):
            blob = self.client.bucket(self.bucket_name).get_blob(name, timeout=self.timeout,
                                                                 retry=self.retry)
        if blob is None:
            return None
        return ObjectInfo(blob.name, int(blob.size or 0), blob.updated)
