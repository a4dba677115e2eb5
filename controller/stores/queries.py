"""Every Firestore query the controller makes, each with the shape its index depends on.

The emulator serves any query without an index, so a new shape that real Firestore refuses
(FAILED_PRECONDITION: "The query requires an index") would pass every emulator test.
Queries are therefore built here and nowhere else, and a unit test checks each shape
against deploy/firestore.indexes.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.cloud.firestore_v1.base_query import FieldFilter

from controller.model import ACTIVE_JOB_STATUSES

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
JOBS_OF_PROJECT = QueryShape("jobs of one project", "jobs", equals=("projectId",))
ACTIVE_JOBS = QueryShape("queued and processing jobs (one range)", "jobs", ranges=("status",))
BY_USER = {collection: QueryShape(f"{collection} in userId order (sweep stream)", collection,
                                  order=("userId", NAME))
           for collection in ("projects", "jobs")}
PROJECTS_BY_ID = QueryShape("projects in id order (the userId-less scan)", "projects",
                            order=(NAME,))
FIRST_PROJECT = QueryShape("one project (connectivity probe)", "projects")
WATCHED_PROJECTS = QueryShape("projects listener: generating, stitching, error", "projects",
                              equals=("status",))
WATCHED_JOBS = QueryShape("jobs listener: queued, processing", "jobs", equals=("status",))

SHAPES: tuple[QueryShape, ...] = (JOBS_OF_PROJECTS, JOBS_OF_PROJECT, ACTIVE_JOBS,
                                  *BY_USER.values(), PROJECTS_BY_ID, FIRST_PROJECT,
                                  WATCHED_PROJECTS, WATCHED_JOBS)
"""Every shape the controller queries; counting a collection needs no index."""

WATCHED_PROJECT_STATUSES = ("error", "generating", "stitching")
"""Statuses in which a project may be stuck, and so is listened to."""


def jobs_of_projects(jobs: Any, project_ids: Sequence[str]) -> Any:
    return jobs.where(filter=FieldFilter("projectId", "in", list(project_ids)))


def jobs_of_project(jobs: Any, project_id: str) -> Any:
    return jobs.where(filter=FieldFilter("projectId", "==", project_id))


def active_jobs(jobs: Any) -> Any:
    """One range over the active statuses: an index-less emulator scans once per range but
    once per `in` value. The range only adds strings sorting between the two, none valid:
    the caller keeps the exact statuses."""
    low, high = min(ACTIVE_JOB_STATUSES), max(ACTIVE_JOB_STATUSES)
    return jobs.where(filter=FieldFilter("status", ">=", low)).where(
        filter=FieldFilter("status", "<=", high))


def ordered(collection: Any, order: Sequence[str]) -> Any:
    """The collection in `order` (a shape's `order`): the sweep's streams and scans."""
    query = collection
    for path in order:
        query = query.order_by(path)
    return query


def first(collection: Any) -> Any:
    return collection.limit(1)


def watched_projects(projects: Any) -> Any:
    return projects.where(filter=FieldFilter("status", "in", list(WATCHED_PROJECT_STATUSES)))


def watched_jobs(jobs: Any) -> Any:
    return jobs.where(filter=FieldFilter("status", "in", sorted(ACTIVE_JOB_STATUSES)))
