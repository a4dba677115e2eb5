"""Streamed reads of whole collections: one counted request per page, each pulled lazily in
batches, a page cut short resumed after its last document.

The consumer (a sweep merging three streams) paces a page, so memory holds a batch, not a
page, and a page's deadline is long; resuming is cheaper than reading a page again.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.cloud.firestore_v1.types import RunQueryRequest, RunQueryResponse, StructuredQuery

from reel_reconciler.stores import RequestLog, queries
from reel_reconciler.stores.billing import SWEEP, current_pass
from reel_reconciler.stores.connection import Connection
from reel_reconciler.stores.values import Document, Reference, decoded, encode

STREAM_BATCH = 500
"""Documents pulled from a streamed page at a time."""


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and (
        if_transient_error(exc) or isinstance(exc, gexc.DeadlineExceeded)
    )


class PagedQuery:
    """One query over one collection, read page by page."""

    def __init__(self, connection: Connection, collection: str, query: StructuredQuery,
                 retry: Retry, timeout: float) -> None:
        self.connection = connection
        self.collection = collection
        self.query = query
        self.order = [o.field.field_path for o in StructuredQuery.pb(query).order_by]
        self.retry = retry
        self.timeout = timeout

    def batches(self, requests: RequestLog, op: str, page_size: int
                ) -> Iterator[list[Document]]:
        """Every document, in batches, one request per `page_size` documents counted as `op`.

        A page cut short (deadline, transient error) resumes after its last document: a
        retry, not counted, as for any request. A resume that cannot reach Firestore within
        the retry deadline raises `Outage`. A server that stops answering without closing
        the connection is the consumer's watchdog's business.
        """
        batch = min(page_size, STREAM_BATCH)
        trigger = current_pass(SWEEP)
        after: Document | None = None
        while True:
            documents = self.page(page_size, after)
            received = 0
            while True:
                with requests.call(op, self.collection) as more:
                    if received:
                        more(-1)  # the rest of a request already counted
                    pulled = list(islice(documents, batch))
                # Billed per document; a page that found none is billed one read.
                requests.billed.documents(len(pulled) or int(not received), trigger)
                if pulled:
                    received += len(pulled)
                    after = pulled[-1]
                    yield pulled
                if len(pulled) < batch:
                    break
            if received < page_size:
                return

    def page(self, limit: int, after: Document | None) -> Iterator[Document]:
        """Up to `limit` documents after `after`, resumed after the last one received when
        the stream breaks on a transient error."""
        received = 0
        while received < limit:
            cursor = None if after is None else self.cursor(after)
            request = RunQueryRequest(
                parent=self.connection.documents,
                structured_query=queries.page(self.query, limit - received, cursor))
            responses = self.connection.api.run_query(
                request=request, retry=self.retry, timeout=self.timeout,
                metadata=self.connection.metadata)
            try:
                for response in responses:
                    raw = RunQueryResponse.pb(response)
                    if raw.HasField("document"):
                        after = decoded(raw.document)
                        received += 1
                        yield after
                return
            except gexc.GoogleAPICallError as exc:
                if not retryable(exc):
                    raise

    def cursor(self, last: Document) -> list[Any]:
        """Where to resume after `last`: the values of the query's order fields."""
        return [encode(Reference(self.connection.name(self.collection, last.id)))
                if path == queries.NAME else encode((last.data or {}).get(path))
                for path in self.order]
