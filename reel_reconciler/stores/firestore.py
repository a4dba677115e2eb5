"""Firestore adapter: the two collections of the app, read and written with preconditions.

Everything goes through the generated (GAPIC) client on a channel of our own
(`reel_reconciler.stores.connection`), with request messages we build: queries come
from `reel_reconciler.stores.queries`, writes from `reel_reconciler.stores.writes`, and
documents are decoded from the raw protobufs (`reel_reconciler.stores.values`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud.firestore_v1.types import (
    BatchGetDocumentsRequest,
    BatchGetDocumentsResponse,
    CommitRequest,
    CommitResponse,
    DocumentMask,
    RunAggregationQueryRequest,
    RunAggregationQueryResponse,
    RunQueryRequest,
    RunQueryResponse,
    StructuredAggregationQuery,
    StructuredQuery,
    Target,
)

from reel_reconciler.config import Settings
from reel_reconciler.metrics import FIRESTORE_REQUESTS_TOTAL, HEARTBEAT_CONFLICTS_TOTAL
from reel_reconciler.model import ACTIVE_JOB_STATUSES
from reel_reconciler.model.identity import ReconcilerId
from reel_reconciler.stores import RequestLog, queries, writes
from reel_reconciler.stores.billing import FEED, OTHER, SWEEP, count_billed_reads, current_pass
from reel_reconciler.stores.changefeed import ChangeFeed, OnChanges
from reel_reconciler.stores.connection import Connection, connect
from reel_reconciler.stores.feedstate import FeedState
from reel_reconciler.stores.paging import PagedQuery, retryable
from reel_reconciler.stores.values import Document as Document
from reel_reconciler.stores.values import by_project, decode, decoded, timestamp

STREAM_TIMEOUT = 300.0
"""Deadline of one streamed page: a longer one is resumed after its last document."""
IN_LIMIT = 30
"""Values Firestore allows in one `in` filter."""
SERVER_TIME = ("updatedAt",)
"""Stamped with the server's time of every write, as the app stamps its own."""
JOB_SERVER_TIME = ("updatedAt", "timedOutAt")
"""A failed job's two stamps: one server time for both."""
ACTIVE_JOB_FIELDS = ("projectId", "status", "updatedAt", "startedAt", "createdAt")
"""What the jobs feed keeps of each active job: its project, and what staleness is judged
on (`Job.last_sign_of_life`). Listen sends whole documents, so more fields cost no reads."""
BATCH_GET_LIMIT = 500
"""Documents asked for in one BatchGetDocuments request."""


def failed_job(message: str) -> dict[str, Any]:
    """The fields a stale job's failure writes besides its server times."""
    return {"status": "failed", "error": message}

T = TypeVar("T")
Bounds = tuple[str, str | None]
"""A userId range `(lo, hi)`: `lo <= userId < hi`, no upper bound if `hi` is None."""


def streamable(doc: Document, strings_only: bool) -> bool:
    """Whether a userId-ordered stream returns `doc`: any `userId` field for the whole
    collection, a string one for a range."""
    data = doc.data or {}
    if "userId" not in data:
        return False
    return not strings_only or isinstance(data["userId"], str)


class FirestoreStore:
    """Reads and precondition-guarded writes; every call has a timeout and a retry deadline."""

    def __init__(self, settings: Settings, reconciler: ReconcilerId,
                 connection: Connection | None = None) -> None:
        self.connection = connection or connect(settings.gcp_project, settings.database)
        self.projects = settings.projects_collection
        self.jobs = settings.jobs_collection
        self.timeout = settings.request_timeout
        self.retry = Retry(predicate=retryable, initial=0.2, maximum=2.0, multiplier=2.0,
                           timeout=settings.retry_deadline)
        self.requests = RequestLog("firestore", FIRESTORE_REQUESTS_TOTAL, reconciler)
        self.reconciler = reconciler
        self.stream_timeout = STREAM_TIMEOUT

    # Reads

    def probe(self) -> None:
        """One cheap read, to fail fast at start when Firestore is unreachable."""
        with self.requests.call("probe", self.projects):
            self._billed(len(self._query(queries.first(self.projects))))

    def get_job(self, job_id: str) -> Document | None:
        with self.requests.call("get_job", job_id):
            found = self._get(self.jobs, [job_id]).get(job_id)
        self._billed(1)
        return found

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Document]:
        """The existing ones among `job_ids`, BATCH_GET_LIMIT per request; each id asked for
        is billed a read, found or not."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Document] = {}
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            chunk = ids[start:start + BATCH_GET_LIMIT]
            with self.requests.call("get_jobs", f"{len(chunk)} jobs"):
                found.update(self._get(self.jobs, chunk))
            self._billed(len(chunk))
        return found

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        """The existing ones among `project_ids`, in one BatchGetDocuments request."""
        with self.requests.call("get_projects", f"{len(project_ids)} projects"):
            found = self._get(self.projects, project_ids)
        self._billed(len(set(project_ids)))
        return found

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        """Every job of each project, in id order: one query per IN_LIMIT projects."""
        found: dict[str, list[Document]] = {project_id: [] for project_id in project_ids}
        ids = list(found)
        for start in range(0, len(ids), IN_LIMIT):
            chunk = ids[start:start + IN_LIMIT]
            with self.requests.call("query_jobs", f"{len(chunk)} projects"):
                documents = self._query(queries.jobs_of_projects(self.jobs, chunk))
            self._billed(len(documents))
            for project_id, jobs in by_project(documents).items():
                found[project_id].extend(jobs)
        for documents in found.values():
            documents.sort(key=lambda doc: doc.id)
        return found

    def active_jobs(self) -> list[Document]:
        """Jobs the worker may still own (queued/processing): the candidates for staleness,
        kept exactly by status (the query is a range, see `queries.active_jobs`)."""
        with self.requests.call("query_active_jobs", self.jobs):
            documents = self._query(queries.active_jobs(self.jobs))
        self._billed(len(documents), SWEEP)
        return [doc for doc in documents if (doc.data or {}).get("status") in ACTIVE_JOB_STATUSES]

    def count_projects(self) -> int:
        """How many project documents exist: one aggregation request, no document read."""
        return self._count(queries.count(self.projects), "count_projects", self.projects)

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        """How many projects are in each of `statuses`: one aggregation request each."""
        return {status: self._count(queries.count_status(self.projects, status),
                                    "count_status", status) for status in statuses}

    def _count(self, query: StructuredAggregationQuery, op: str, what: str) -> int:
        request = RunAggregationQueryRequest(parent=self.connection.documents,
                                             structured_aggregation_query=query)

        def run() -> int:
            for response in self.connection.api.run_aggregation_query(
                    request=request, retry=None, timeout=self.timeout,
                    metadata=self.connection.metadata):
                raw = RunAggregationQueryResponse.pb(response)
                if raw.HasField("result"):
                    return int(raw.result.aggregate_fields["count"].integer_value)
            raise gexc.InternalServerError("aggregation answered without a result")

        with self.requests.call(op, what):
            counted = self._retried(run)
        self.requests.billed.documents(count_billed_reads(counted), current_pass(SWEEP))
        return counted

    # Streamed reads (the sweep)

    def projects_by_user(self, page_size: int, fields: Sequence[str] | None = None,
                         key_range: Bounds | None = None) -> Iterator[list[Document]]:
        """Every project with a `userId` field (`lo <= userId < hi` if `key_range` is given:
        string userIds only), ordered by (userId, id), only `fields` read.

        One request per `page_size` documents, each pulled lazily in batches, so memory holds
        a batch, not a page. Firestore leaves out documents without the field:
        `count_projects` lets the sweep notice them.
        """
        query = self._by_user("projects", self.projects, fields, key_range)
        return self._streamed(self.projects, query, "stream_projects", page_size)

    def jobs_by_user(self, page_size: int, fields: Sequence[str],
                     key_range: Bounds | None = None) -> Iterator[list[Document]]:
        """Every job with a `userId` field (in `key_range`, if given), ordered by (userId,
        id), only `fields` read."""
        query = self._by_user("jobs", self.jobs, fields, key_range)
        return self._streamed(self.jobs, query, "stream_jobs", page_size)

    @staticmethod
    def _by_user(kind: queries.Collection, collection: str, fields: Sequence[str] | None,
                 key_range: Bounds | None) -> StructuredQuery:
        if key_range is None:
            return queries.by_user(kind, collection, fields)
        return queries.by_user_range(kind, collection, fields, *key_range)

    def projects_without_user(self, page_size: int, strings_only: bool = False
                              ) -> Iterator[str]:
        """Ids of projects lacking a `userId` field, or with `strings_only` (the streams
        were ranges, which match strings only) one that is not a string; only that field is
        read: the documents the userId-ordered streams cannot return, found by scanning the
        collection in id order."""
        query = queries.projects_by_id(self.projects, ["userId"])
        for documents in self._streamed(self.projects, query, "scan_projects", page_size):
            for doc in documents:
                if not streamable(doc, strings_only):
                    yield doc.id

    # A delta round's reads

    def projects_of_users(self, users: Sequence[str], fields: Sequence[str] | None = None
                          ) -> list[Document]:
        """The projects of `users` (string userIds), only `fields` read: one query per
        IN_LIMIT users."""
        return self._of_users("projects", self.projects, users, fields, "query_user_projects")

    def jobs_of_users(self, users: Sequence[str], fields: Sequence[str]) -> list[Document]:
        """The jobs of `users`, only `fields` read: one query per IN_LIMIT users."""
        return self._of_users("jobs", self.jobs, users, fields, "query_user_jobs")

    def _of_users(self, kind: queries.Collection, collection: str, users: Sequence[str],
                  fields: Sequence[str] | None, op: str) -> list[Document]:
        found: list[Document] = []
        ids = list(dict.fromkeys(users))
        for start in range(0, len(ids), IN_LIMIT):
            chunk = ids[start:start + IN_LIMIT]
            with self.requests.call(op, f"{len(chunk)} users"):
                found += self._query(queries.of_users(kind, collection, chunk, fields))
        return found

    def projects_not_at_rest(self) -> list[str]:
        """Ids of the projects in `generating` or `stitching` (the indexed pass)."""
        with self.requests.call("query_not_at_rest", self.projects):
            return [doc.id for doc in self._query(queries.not_at_rest(self.projects))]

    def _streamed(self, collection: str, query: StructuredQuery, op: str,
                  page_size: int) -> Iterator[list[Document]]:
        paged = PagedQuery(self.connection, collection, query, self.retry, self.stream_timeout)
        return paged.batches(self.requests, op, page_size)

    # Writes

    def update_project(self, project_id: str, fields: Mapping[str, Any],
                       read_update_time: datetime) -> datetime:
        """Write `fields` only if the document is still the one we read (D4)."""
        name = self.connection.name(self.projects, project_id)
        write = writes.update(name, fields, SERVER_TIME, read_update_time)
        with self.requests.call("update_project", project_id):
            return self._commit([write])[0]

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> dict[str, datetime]:
        """Every update in one atomic commit, each only if its document is still the one we
        read: one stale document fails them all (Conflict) and nothing is written. The
        emulator pushes its listeners once per commit rather than once per document.
        Returns each document's new update time."""
        name = self.connection.name
        batch = [writes.update(name(self.projects, project_id), fields, SERVER_TIME, read_time)
                 for project_id, (fields, read_time) in updates.items()]
        with self.requests.call("update_projects", f"{len(updates)} projects"):
            written = self._commit(batch)
        return dict(zip(updates, written, strict=True))

    def fail_job(self, job_id: str, message: str, read_update_time: datetime) -> datetime:
        """Mark a stale job failed, only if nobody touched it since we read it. `timedOutAt`
        and `updatedAt` get the same server time, so a later `updatedAt` is a worker that was
        only slow (a zombie), never us. Returns the new version's update time."""
        write = writes.update(self.connection.name(self.jobs, job_id),
                              failed_job(message), JOB_SERVER_TIME, read_update_time)
        with self.requests.call("fail_job", job_id):
            return self._commit([write])[0]

    # Listeners and their heartbeat

    def watch_projects(self, on_changes: OnChanges,
                       state: FeedState | None = None) -> ChangeFeed:
        """A feed (not started) on the projects in a status they may be stuck in; ids only.
        `state`: a stopped feed's, to pick up after (every feed here takes one)."""
        return self._watch(queries.watched_projects(self.projects), (), on_changes, state)

    def watch_active_jobs(self, on_changes: OnChanges,
                          state: FeedState | None = None) -> ChangeFeed:
        """A feed (not started) on the queued and processing jobs, with ACTIVE_JOB_FIELDS."""
        return self._watch(queries.watched_jobs(self.jobs), ACTIVE_JOB_FIELDS, on_changes,
                           state)

    def watch_heartbeat(self, collection: str, name: str, on_changes: OnChanges,
                        state: FeedState | None = None) -> ChangeFeed:
        """A feed (not started) on one heartbeat document: proof the listen path is alive."""
        target = {"documents": {"documents": [self.connection.name(collection, name)]}}
        return ChangeFeed(self.connection, target, (), decode, on_changes, state,
                          billed=self._feed_read)

    def beat(self, collection: str, name: str, count: int,
             last_update_time: datetime | None) -> datetime | None:
        """Write heartbeat `name` (its `count`, the server's time), created if
        `last_update_time` is None, else only if it is still our last write. Returns the
        update time to guard the next beat on: this write's, or after a conflict (another
        writer, a wiped database) the document's current one, None if it is gone."""
        document = self.connection.name(collection, name)
        fields = {"reconciler": name, "beat": count}
        write = (writes.create(document, fields, ("at",)) if last_update_time is None
                 else writes.update(document, fields, ("at",), last_update_time))
        with self.requests.call("heartbeat", name):
            try:
                return self._commit([write])[0]
            except (gexc.AlreadyExists, gexc.NotFound, gexc.FailedPrecondition) as exc:
                if isinstance(exc, gexc.FailedPrecondition):
                    # Our own last write is no longer the latest: another process beats under
                    # this reconciler's name (two replicas running it: split brain).
                    HEARTBEAT_CONFLICTS_TOTAL.labels(self.reconciler.label).inc()
                found = self._get(collection, [name]).get(name)
                self._billed(1)
                return found.update_time if found is not None else None

    def breaker(self, collection: str, name: str) -> Document | None:
        """The breaker document of reconciler `name` (None: never tripped)."""
        return self.own_document(collection, name, "get_breaker")

    def put_breaker(self, collection: str, name: str, fields: Mapping[str, Any],
                    read_update_time: datetime | None) -> datetime:
        """Create the breaker document, or update the version read (raises Conflict when
        another process wrote it since): a trip and a resume never overwrite each other."""
        return self.put_own_document(collection, name, fields, read_update_time, "put_breaker")

    def own_document(self, collection: str, name: str, op: str,
                     fields: Sequence[str] | None = None) -> Document | None:
        """A document of our own collections (not the app's), None if there is none; only
        `fields` of it when given (the read is billed alike, the bytes are not sent)."""
        with self.requests.call(op, name):
            found = self._get(collection, [name], fields).get(name)
        self._billed(1)
        return found

    def put_own_document(self, collection: str, name: str, fields: Mapping[str, Any],
                         read_update_time: datetime | None, op: str) -> datetime:
        """Create a document of our own (none read), or replace the fields of the version read;
        raises Conflict when another writer came first. `at` gets the server's time."""
        document = self.connection.name(collection, name)
        write = (writes.create(document, fields, ("at",)) if read_update_time is None
                 else writes.update(document, fields, ("at",), read_update_time))
        with self.requests.call(op, name):
            return self._commit([write])[0]

    def create_round_document(self, collection: str, doc_id: str,
                              fields: Mapping[str, Any]) -> datetime:
        """Create a document of a distributed round (a range's result, the round called
        off) only where none exists; raises Conflict when one does: the first stands."""
        write = writes.create(self.connection.name(collection, doc_id), fields,
                              ("finishedAt",))
        with self.requests.call("create_round_document", doc_id):
            return self._commit([write])[0]

    def round_documents(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The documents of distributed rounds among `doc_ids` that exist, by id."""
        with self.requests.call("get_round_documents", f"{len(doc_ids)} documents"):
            found = self._get(collection, doc_ids)
        self._billed(len(doc_ids))
        return found

    def _watch(self, query: StructuredQuery, fields: Sequence[str],
               on_changes: OnChanges, state: FeedState | None) -> ChangeFeed:
        target = {"query": Target.QueryTarget(parent=self.connection.documents,
                                              structured_query=query)}
        return ChangeFeed(self.connection, target, fields, decode, on_changes, state,
                          billed=self._feed_read)

    # The requests

    def _billed(self, documents: int, default: str = OTHER) -> None:
        """A query's or a read's documents, as billed: a query that found none costs one."""
        self.requests.billed.documents(max(documents, 1), current_pass(default))

    def _feed_read(self, documents: int) -> None:
        self.requests.billed.documents(documents, FEED)

    def _retried(self, attempt: Callable[[], T]) -> T:
        """A whole streamed answer, read again from the start on a transient error: for
        answers small enough that resuming is not worth it."""
        retried: Callable[[], T] = self.retry(attempt)
        return retried()

    def _query(self, query: StructuredQuery) -> list[Document]:
        """Every document of a short query."""
        request = RunQueryRequest(parent=self.connection.documents, structured_query=query)

        def run() -> list[Document]:
            responses = self.connection.api.run_query(
                request=request, retry=None, timeout=self.timeout,
                metadata=self.connection.metadata)
            return [decoded(raw.document) for raw in map(RunQueryResponse.pb, responses)
                    if raw.HasField("document")]

        return self._retried(run)

    def _get(self, collection: str, doc_ids: Sequence[str],
             fields: Sequence[str] | None = None) -> dict[str, Document]:
        """The existing ones among `doc_ids`, by id (only `fields` of each when given)."""
        names = [self.connection.name(collection, doc_id) for doc_id in dict.fromkeys(doc_ids)]
        if not names:
            return {}
        mask = None if fields is None else DocumentMask(field_paths=list(fields))
        request = BatchGetDocumentsRequest(database=self.connection.database, documents=names,
                                           mask=mask)

        def run() -> dict[str, Document]:
            responses = self.connection.api.batch_get_documents(
                request=request, retry=None, timeout=self.timeout,
                metadata=self.connection.metadata)
            found = (decoded(raw.found) for raw in map(BatchGetDocumentsResponse.pb, responses)
                     if raw.HasField("found"))
            return {doc.id: doc for doc in found}

        return self._retried(run)

    def _commit(self, batch: Sequence[Any]) -> list[datetime]:
        """One atomic commit; the update time of each written document."""
        request = CommitRequest(database=self.connection.database, writes=list(batch))
        response = self.connection.api.commit(request=request, retry=self.retry,
                                              timeout=self.timeout,
                                              metadata=self.connection.metadata)
        return [timestamp(result.update_time)
                for result in CommitResponse.pb(response).write_results]
