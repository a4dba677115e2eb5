"""Every Firestore query the controller makes, each with the shape its index depends on.

The emulator serves any query without an index, so a new shape that real Firestore refuses
(FAILED_PRECONDITION: "The query requires an index") would pass every emulator test.
Queries are therefore built here and nowhere else, as `StructuredQuery` messages built from
their shape (a filter on a field the shape does not declare is refused), and a unit test
checks each shape against deploy/firestore.indexes.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.cloud.firestore_v1.types import StructuredAggregationQuery, StructuredQuery

from reel_reconciler.model import ACTIVE_JOB_STATUSES
from reel_reconciler.stores.values import RawValue, encode, field_path

Collection = Literal["projects", "jobs"]
NAME = "__name__"


@dataclass(frozen=True)
class QueryShape:
    """What an index must serve: filtered and ordered fields (ascending), not values."""

    name: str
    collection: Collection
    equals: tuple[str, ...] = ()
    """Fields under `==` or `in` filters."""
    ranges: tuple[str, ...] = ()
    """Fields under `<`, `<=`, `>`, `>=` filters."""
    order: tuple[str, ...] = ()
    """order_by fields, ascending; `__name__` last if at all."""

    def composite(self) -> tuple[str, ...] | None:
        """The fields of the composite index this shape needs, in index order; None when the
        automatic single-field indexes serve it (one field besides the document name, or
        equality filters alone, which Firestore merges)."""
        fields = list(dict.fromkeys([*self.equals, *self.ranges,
                                     *(f for f in self.order if f != NAME)]))
        if len(fields) <= 1 or (not self.ranges and not self.order):
            return None
        return tuple(fields)


JOBS_OF_PROJECTS = QueryShape("jobs of up to 30 projects", "jobs", equals=("projectId",))
ACTIVE_JOBS = QueryShape("queued and processing jobs (one range)", "jobs", ranges=("status",))
BY_USER = {collection: QueryShape(f"{collection} in userId order (sweep stream)", collection,
                                  order=("userId", NAME))
           for collection in ("projects", "jobs")}
BY_USER_RANGE = {collection: QueryShape(
    f"{collection} of one userId range in userId order (ranged sweep stream)", collection,
    ranges=("userId",), order=("userId", NAME)) for collection in ("projects", "jobs")}
PROJECTS_BY_ID = QueryShape("projects in id order (the userId-less scan)", "projects",
                            order=(NAME,))
FIRST_PROJECT = QueryShape("one project (connectivity probe)", "projects")
WATCHED_PROJECTS = QueryShape("projects listener: generating, stitching, error", "projects",
                              equals=("status",))
WATCHED_JOBS = QueryShape("jobs listener: queued, processing", "jobs", equals=("status",))
OF_USERS = {collection: QueryShape(f"{collection} of up to 30 users (delta round)", collection,
                                   equals=("userId",)) for collection in ("projects", "jobs")}
NOT_AT_REST = QueryShape("projects generating or stitching (indexed pass)", "projects",
                         equals=("status",))
STATUS_COUNT = QueryShape("projects of one status, counted (delta round's gauge)", "projects",
                          equals=("status",))

SHAPES: tuple[QueryShape, ...] = (JOBS_OF_PROJECTS, ACTIVE_JOBS,
                                  *BY_USER.values(), *BY_USER_RANGE.values(), PROJECTS_BY_ID,
                                  FIRST_PROJECT, WATCHED_PROJECTS, WATCHED_JOBS,
                                  *OF_USERS.values(), NOT_AT_REST, STATUS_COUNT)
"""Every shape the controller queries; counting a collection needs no index."""

WATCHED_PROJECT_STATUSES = ("error", "generating", "stitching")
"""Statuses in which a project may be stuck, and so is listened to."""
NOT_AT_REST_STATUSES = ("generating", "stitching")
"""Statuses whose project waits on a worker or stitcher: every delta round looks at them,
whether or not their storage changed."""


_Op = StructuredQuery.FieldFilter.Operator
_EQUALS = {"==": _Op.EQUAL, "in": _Op.IN}
_RANGES = {"<": _Op.LESS_THAN, "<=": _Op.LESS_THAN_OR_EQUAL, ">": _Op.GREATER_THAN,
           ">=": _Op.GREATER_THAN_OR_EQUAL}
Condition = tuple[str, str, Any]
"""(field, operator, value): `==` and `in` on a shape's `equals`, ranges on its `ranges`."""


def _filter(shape: QueryShape, condition: Condition) -> StructuredQuery.Filter:
    field, op, value = condition
    declared = shape.equals if op in _EQUALS else shape.ranges if op in _RANGES else ()
    if field not in declared:
        raise ValueError(f"{shape.name}: {field} {op} is not in the shape's declared fields")
    return StructuredQuery.Filter(field_filter=StructuredQuery.FieldFilter(
        field=StructuredQuery.FieldReference(field_path=field_path(field)),
        op={**_EQUALS, **_RANGES}[op], value=encode(value)))


def shaped_query(shape: QueryShape, collection: str, *conditions: Condition,
                 fields: Sequence[str] | None = None,
                 limit: int | None = None) -> StructuredQuery:
    """The query of `shape` on `collection` (its id): the shape's order, `conditions` ANDed,
    only `fields` read (all if None)."""
    query = StructuredQuery(
        from_=[StructuredQuery.CollectionSelector(collection_id=collection)],
        order_by=[StructuredQuery.Order(
            field=StructuredQuery.FieldReference(field_path=field_path(path)),
            direction=StructuredQuery.Direction.ASCENDING) for path in shape.order])
    filters = [_filter(shape, condition) for condition in conditions]
    if len(filters) == 1:
        query.where = filters[0]
    elif filters:
        query.where = StructuredQuery.Filter(composite_filter=StructuredQuery.CompositeFilter(
            op=StructuredQuery.CompositeFilter.Operator.AND, filters=filters))
    if fields is not None:
        query.select = StructuredQuery.Projection(
            fields=[StructuredQuery.FieldReference(field_path=field_path(name))
                    for name in fields])
    if limit is not None:
        query.limit = limit
    return query


def jobs_of_projects(jobs: str, project_ids: Sequence[str]) -> StructuredQuery:
    return shaped_query(JOBS_OF_PROJECTS, jobs, ("projectId", "in", list(project_ids)))


def active_jobs(jobs: str) -> StructuredQuery:
    """One range over the active statuses: an index-less emulator scans once per range but
    once per `in` value. The range only adds strings sorting between the two, none valid:
    the caller keeps the exact statuses."""
    low, high = min(ACTIVE_JOB_STATUSES), max(ACTIVE_JOB_STATUSES)
    return shaped_query(ACTIVE_JOBS, jobs, ("status", ">=", low), ("status", "<=", high))


def by_user(kind: Collection, collection: str, fields: Sequence[str] | None
            ) -> StructuredQuery:
    """The projects or the jobs in (userId, id) order: the sweep's streams."""
    return shaped_query(BY_USER[kind], collection, fields=fields)


def by_user_range(kind: Collection, collection: str, fields: Sequence[str] | None, lo: str,
                  hi: str | None) -> StructuredQuery:
    """The projects or jobs with `lo <= userId < hi` (no upper bound if `hi` is None) in
    (userId, id) order: one range of a ranged sweep. Only string userIds match."""
    conditions: list[Condition] = [("userId", ">=", lo)]
    if hi is not None:
        conditions.append(("userId", "<", hi))
    return shaped_query(BY_USER_RANGE[kind], collection, *conditions, fields=fields)


def projects_by_id(projects: str, fields: Sequence[str] | None) -> StructuredQuery:
    """Every project in id order: the scan for projects without a userId."""
    return shaped_query(PROJECTS_BY_ID, projects, fields=fields)


def first(projects: str) -> StructuredQuery:
    return shaped_query(FIRST_PROJECT, projects, limit=1)


def of_users(kind: Collection, collection: str, users: Sequence[str],
             fields: Sequence[str] | None) -> StructuredQuery:
    """The projects or jobs of a few users (at most 30, Firestore's `in` limit), in id
    order: the reads of a delta round."""
    return shaped_query(OF_USERS[kind], collection, ("userId", "in", list(users)),
                        fields=fields)


def not_at_rest(projects: str) -> StructuredQuery:
    """Projects a worker or stitcher may have left mid-way, ids only: the indexed pass."""
    return shaped_query(NOT_AT_REST, projects,
                        ("status", "in", list(NOT_AT_REST_STATUSES)), fields=["status"])


def watched_projects(projects: str) -> StructuredQuery:
    return shaped_query(WATCHED_PROJECTS, projects,
                        ("status", "in", list(WATCHED_PROJECT_STATUSES)))


def watched_jobs(jobs: str) -> StructuredQuery:
    return shaped_query(WATCHED_JOBS, jobs, ("status", "in", sorted(ACTIVE_JOB_STATUSES)))


def count(collection: str, query: StructuredQuery | None = None
          ) -> StructuredAggregationQuery:
    """How many documents the collection holds (or `query` returns): no filter, no order, no
    index needed for the whole collection."""
    Aggregation = StructuredAggregationQuery.Aggregation
    return StructuredAggregationQuery(
        structured_query=query or StructuredQuery(
            from_=[StructuredQuery.CollectionSelector(collection_id=collection)]),
        aggregations=[Aggregation(alias="count", count=Aggregation.Count())])


def count_status(projects: str, status: str) -> StructuredAggregationQuery:
    """How many projects are in `status`: a delta round's gauge of projects by status."""
    return count(projects, shaped_query(STATUS_COUNT, projects, ("status", "==", status)))


def page(query: StructuredQuery, limit: int, after: Sequence[RawValue] | None) -> Any:
    """A raw copy of `query` limited to `limit` documents, starting after the one whose order
    field values are `after`: the same shape, resumed."""
    raw = StructuredQuery.pb()()
    raw.CopyFrom(StructuredQuery.pb(query))
    raw.limit.value = limit
    if after is not None:
        raw.start_at.values.extend(after)
        raw.start_at.before = False
    return raw
