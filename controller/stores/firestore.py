"""Firestore adapter: the two collections of the app, read and written with preconditions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.retry import Retry, if_transient_error
from google.cloud import firestore
from google.cloud.firestore_v1.base_client import _DEFAULT_CHANNEL_OPTIONS, _GRPC_MSG_SIZE_OPTIONS
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

from controller.config import Settings
from controller.metrics import FIRESTORE_REQUESTS_TOTAL
from controller.model import ACTIVE_JOB_STATUSES
from controller.stores import RequestLog, queries
from controller.stores.changefeed import ChangeFeed, OnChanges


@dataclass(frozen=True)
class Document:
    """A document as read: id, fields (None if absent) and the server's update time."""

    id: str
    data: Mapping[str, Any] | None
    update_time: datetime


STREAM_TIMEOUT = 300.0
"""Deadline of one streamed page: the client resumes a longer one after its last document."""
STREAM_BATCH = 500
"""Documents pulled from a streamed page at a time."""
IN_LIMIT = 30
"""Values Firestore allows in one `in` filter."""


def _document(snapshot: Any) -> Document:
    return Document(id=snapshot.id, data=snapshot.to_dict(), update_time=snapshot.update_time)


def _cursor(order: Sequence[str], last: Document) -> dict[str, Any]:
    """Where to resume a query in `order` after `last`: the values of its order fields."""
    return {path: last.id if path == "__name__" else (last.data or {}).get(path)
            for path in order}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(raw: Any) -> datetime:
    """A `Timestamp` protobuf, exact (an update time is a write precondition): a plain UTC
    datetime when it fits in microseconds, as Firestore's do, three times cheaper than the
    client's `DatetimeWithNanoseconds`, which carries any finer one."""
    if raw.nanos % 1000:
        stamp: datetime = DatetimeWithNanoseconds.from_timestamp_pb(raw)  # type: ignore[no-untyped-call]
        return stamp
    return _EPOCH + timedelta(seconds=raw.seconds, microseconds=raw.nanos // 1000)


_SCALARS = frozenset({"string_value", "integer_value", "boolean_value", "double_value",
                      "bytes_value"})
"""Value kinds that decode to the protobuf's own Python value: most of a document."""


def _stamped(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An update as the app writes one: `updatedAt` is the server's time of the write."""
    return {**fields, "updatedAt": firestore.SERVER_TIMESTAMP}


STREAM_WINDOW = 1 << 20
"""Bytes of a stream gRPC receives ahead of the reader. gRPC otherwise sizes the window by
probing the bandwidth-delay product, which on a fast link lets the server run tens of MB
ahead of a slower sweep: at 100k projects the sweep's peak RSS moved between 154 and 288 MiB
from run to run, and stayed at 114-118 MiB with this fixed window, as fast
(bench/RESULTS.md)."""

_STREAM_OPTIONS = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
                   ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", STREAM_WINDOW)]


def streaming_client(project: str | None, database: str) -> firestore.Client:
    """A Firestore client whose streamed answers (queries, batched reads) are read on the
    calling thread, at most `STREAM_WINDOW` bytes ahead of it.

    By default gRPC reads every message of a stream on a thread of its own and hands it over,
    which costs about 50 us of interpreter time per document: more than everything else a
    sweep does with it (bench/RESULTS.md). The client takes no channel options, so its GAPIC
    client is installed here on a channel built as the client builds its own (the emulator's
    insecure one with its bearer token, or a secure one with the client's credentials), plus
    gRPC's `SingleThreadedUnaryStream` option and a fixed flow-control window. Listeners are
    bidirectional streams: read as before, within the same window.
    """
    client = firestore.Client(project=project, database=database)
    transport = FirestoreGrpcTransport
    if client._emulator_host is not None:
        channel = grpc.insecure_channel(client._emulator_host, options=[
            ("Authorization", "Bearer owner"), *_GRPC_MSG_SIZE_OPTIONS, *_STREAM_OPTIONS])
    else:
        channel = transport.create_channel(
            client._target, credentials=client._credentials,
            options=[*_DEFAULT_CHANNEL_OPTIONS, *_STREAM_OPTIONS])
    client._firestore_api_internal = FirestoreClient(
        transport=transport(host=client._target, channel=channel),
        client_options=client._client_options)
    return client


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and (
        if_transient_error(exc) or isinstance(exc, gexc.DeadlineExceeded)
    )


class FirestoreStore:
    """Reads and precondition-guarded writes; every call has a timeout and a retry deadline."""

    def __init__(self, settings: Settings, reconciler: str = "cli",
                 client: firestore.Client | None = None) -> None:
        self.client = client or streaming_client(settings.gcp_project, settings.database)
        self.projects = self.client.collection(settings.projects_collection)
        self.jobs = self.client.collection(settings.jobs_collection)
        self.timeout = settings.request_timeout
        self.retry = Retry(predicate=_retryable, initial=0.2, maximum=2.0, multiplier=2.0,
                           timeout=settings.retry_deadline)
        self.requests = RequestLog("firestore", FIRESTORE_REQUESTS_TOTAL, reconciler)
        self.stream_timeout = STREAM_TIMEOUT

    def probe(self) -> None:
        """One cheap read, to fail fast at start when Firestore is unreachable."""
        with self.requests.call("probe", self.projects.id):
            list(queries.first(self.projects).stream(retry=self.retry, timeout=self.timeout))

    def get_project(self, project_id: str) -> Document | None:
        with self.requests.call("get_project", project_id):
            snapshot = self.projects.document(project_id).get(retry=self.retry,
                                                              timeout=self.timeout)
        return _document(snapshot) if snapshot.exists else None

    def get_job(self, job_id: str) -> Document | None:
        with self.requests.call("get_job", job_id):
            snapshot = self.jobs.document(job_id).get(retry=self.retry, timeout=self.timeout)
        return _document(snapshot) if snapshot.exists else None

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        """The existing ones among `project_ids`, in one BatchGetDocuments request."""
        refs = [self.projects.document(project_id) for project_id in project_ids]
        with self.requests.call("get_projects", f"{len(refs)} projects"):
            snapshots = list(self.client.get_all(refs, retry=self.retry, timeout=self.timeout))
        return {s.id: _document(s) for s in snapshots if s.exists}

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        """Every job of each project, in id order: one query per IN_LIMIT projects."""
        found: dict[str, list[Document]] = {project_id: [] for project_id in project_ids}
        ids = list(found)
        for start in range(0, len(ids), IN_LIMIT):
            chunk = ids[start:start + IN_LIMIT]
            query = queries.jobs_of_projects(self.jobs, chunk)
            with self.requests.call("query_jobs", f"{len(chunk)} projects"):
                snapshots = list(query.stream(retry=self.retry, timeout=self.timeout))
            for snapshot in snapshots:
                found[snapshot.get("projectId")].append(_document(snapshot))
        for documents in found.values():
            documents.sort(key=lambda doc: doc.id)
        return found

    def project_jobs(self, project_id: str) -> list[Document]:
        query = queries.jobs_of_project(self.jobs, project_id)
        with self.requests.call("query_jobs", project_id):
            return [_document(s) for s in query.stream(retry=self.retry, timeout=self.timeout)]

    def active_jobs(self) -> list[Document]:
        """Jobs the worker may still own (queued/processing): the candidates for staleness,
        kept exactly by status (the query is a range, see `queries.active_jobs`)."""
        query = queries.active_jobs(self.jobs)
        with self.requests.call("query_active_jobs", self.jobs.id):
            snapshots = list(query.stream(retry=self.retry, timeout=self.timeout))
        return [_document(s) for s in snapshots if s.get("status") in ACTIVE_JOB_STATUSES]

    def projects_by_user(self, page_size: int,
                         fields: Sequence[str] | None = None) -> Iterator[list[Document]]:
        """Every project with a `userId` field, ordered by (userId, id), only `fields` read.

        One request per `page_size` documents, each pulled lazily in batches, so memory holds
        a batch, not a page. Firestore leaves out documents without the field:
        `count_projects` lets the sweep notice them.
        """
        return self._by_user(self.projects, "stream_projects", page_size, fields)

    def jobs_by_user(self, page_size: int, fields: Sequence[str]) -> Iterator[list[Document]]:
        """Every job with a `userId` field, ordered by (userId, id), only `fields` read."""
        return self._by_user(self.jobs, "stream_jobs", page_size, fields)

    def count_projects(self) -> int:
        """How many project documents exist: one aggregation request, no document read."""
        with self.requests.call("count_projects", self.projects.id):
            query = self.projects.count()  # type: ignore[no-untyped-call]
            result = query.get(retry=self.retry, timeout=self.timeout)
        return int(result[0][0].value)

    def projects_without_user(self, page_size: int) -> Iterator[str]:
        """Ids of projects lacking a `userId` field (only that field is read): the documents a
        userId-ordered stream cannot return, found by scanning the collection in id order."""
        for documents in self._streamed(self.projects, queries.PROJECTS_BY_ID.order, ["userId"],
                                        "scan_projects", page_size):
            for doc in documents:
                if doc.data is None or "userId" not in doc.data:
                    yield doc.id

    def _by_user(self, collection: Any, op: str, page_size: int,
                 fields: Sequence[str] | None) -> Iterator[list[Document]]:
        return self._streamed(collection, queries.BY_USER["projects"].order, fields, op,
                              page_size)

    def _streamed(self, collection: Any, order: Sequence[str], fields: Sequence[str] | None,
                  op: str, page_size: int) -> Iterator[list[Document]]:
        """The collection in `order`, only `fields` read (all if None), one counted request
        per page, each pulled in batches.

        The consumer paces a page, so its deadline is long (`stream_timeout`); a page cut
        short (deadline, transient error) resumes after its last document: a retry, not
        counted, as for any request. A resume that cannot reach Firestore within the retry
        deadline raises `Outage`. A server that stops answering without closing the
        connection is the consumer's watchdog's business.
        """
        query = queries.ordered(collection, order)
        if fields is not None:
            query = query.select(list(fields))
        batch = min(page_size, STREAM_BATCH)
        after: Document | None = None
        while True:
            documents = self._page(query, order, page_size, after)
            received = 0
            while True:
                with self.requests.call(op, collection.id) as more:
                    if received:
                        more(-1)  # the rest of a request already counted
                    pulled = list(islice(documents, batch))
                if pulled:
                    received += len(pulled)
                    after = pulled[-1]
                    yield pulled
                if len(pulled) < batch:
                    break
            if received < page_size:
                return

    def _page(self, query: Any, order: Sequence[str], limit: int,
              after: Document | None) -> Iterator[Document]:
        """Up to `limit` documents after `after`, decoded straight from the RunQuery protobuf.

        The client's own snapshots wrap every value in proto-plus on the way, which cost a
        sweep three times the read itself (bench/RESULTS.md); the query, its request, retry
        and channel remain the client's.
        """
        received = 0
        while received < limit:
            page = query.limit(limit - received)
            if after is not None:
                page = page.start_after(_cursor(order, after))
            responses, _ = page._get_stream_iterator(None, self.retry, self.stream_timeout)
            try:
                for response in responses:
                    raw = type(response).pb(response)
                    if raw.HasField("document"):
                        after = self._decoded(raw.document)
                        received += 1
                        yield after
                return
            except gexc.GoogleAPICallError as exc:
                if not _retryable(exc):
                    raise

    def _decoded(self, raw: Any) -> Document:
        return Document(id=raw.name.rpartition("/")[2],
                        data={name: self._value(value) for name, value in raw.fields.items()},
                        update_time=_timestamp(raw.update_time))

    def _value(self, value: Any) -> Any:
        """A Firestore `Value` protobuf as the client's `to_dict()` gives it."""
        kind = value.WhichOneof("value_type")
        if kind in _SCALARS:
            return getattr(value, kind)
        if kind == "map_value":
            return {name: self._value(item) for name, item in value.map_value.fields.items()}
        if kind == "array_value":
            return [self._value(item) for item in value.array_value.values]
        if kind == "timestamp_value":
            return _timestamp(value.timestamp_value)
        if kind == "null_value" or kind is None:
            return None
        if kind == "geo_point_value":
            return firestore.GeoPoint(value.geo_point_value.latitude,
                                      value.geo_point_value.longitude)
        if kind == "reference_value":
            return self.client.document(value.reference_value.split("/documents/", 1)[1])
        return getattr(value, kind)

    def watch(self, target: Any, fields: Sequence[str], on_changes: OnChanges) -> ChangeFeed:
        """A change feed (not started) on a query or a document reference, `fields` decoded."""
        if isinstance(target, DocumentReference):
            return ChangeFeed.for_document(target, fields, self._value, on_changes)
        return ChangeFeed.for_query(target, fields, self._value, on_changes)

    def update_project(self, project_id: str, fields: Mapping[str, Any],
                       read_update_time: datetime) -> datetime:
        """Write `fields` only if the document is still the one we read (D4)."""
        option = self.client.write_option(last_update_time=read_update_time)
        with self.requests.call("update_project", project_id):
            result = self.projects.document(project_id).update(
                _stamped(fields), option=option, retry=self.retry, timeout=self.timeout)
        return result.update_time  # type: ignore[no-any-return]

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> None:
        """Every update in one atomic commit, each only if its document is still the one we
        read: one stale document fails them all (Conflict) and nothing is written. The
        emulator pushes its listeners once per commit rather than once per document."""
        batch = self.client.batch()
        for project_id, (fields, read_update_time) in updates.items():
            batch.update(self.projects.document(project_id), _stamped(fields),
                         option=self.client.write_option(last_update_time=read_update_time))
        with self.requests.call("update_projects", f"{len(updates)} projects"):
            batch.commit(retry=self.retry, timeout=self.timeout)

    def fail_job(self, job_id: str, message: str, read_update_time: datetime) -> None:
        """Mark a stale job failed, only if nobody touched it since we read it. `timedOutAt`
        and `updatedAt` get the same server time, so a later `updatedAt` is a worker that was
        only slow (a zombie), never us."""
        payload = {"status": "failed", "error": message,
                   "updatedAt": firestore.SERVER_TIMESTAMP,
                   "timedOutAt": firestore.SERVER_TIMESTAMP}
        option = self.client.write_option(last_update_time=read_update_time)
        with self.requests.call("fail_job", job_id):
            self.jobs.document(job_id).update(payload, option=option, timeout=self.timeout)
