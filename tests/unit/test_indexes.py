"""Every Firestore query of the controller has the index real Firestore needs to serve it.

The emulator serves any query, so only this check stands between a new query shape and a
FAILED_PRECONDITION in production. The shapes live in reel_reconciler/stores/queries.py, the only
module allowed to build a query; deploy/firestore.indexes.json is what users deploy.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.types import StructuredQuery

from reel_reconciler.config import Settings
from reel_reconciler.stores import queries
from reel_reconciler.stores.queries import NAME, SHAPES, QueryShape

REPO = Path(__file__).resolve().parents[2]
INDEXES = REPO / "deploy/firestore.indexes.json"
QUERY_CALLS = {"where", "order_by"}
"""The high-level client's query builders."""
QUERY_TYPES = {"StructuredQuery", "StructuredAggregationQuery", "FieldFilter", "CompositeFilter"}
"""Messages a query is built of: constructing one (or a nested type) builds a query."""
DEFAULTS = Settings(bucket="unused")
COLLECTIONS = {"projects": DEFAULTS.projects_collection, "jobs": DEFAULTS.jobs_collection}


def unserved(shapes: tuple[QueryShape, ...], spec: dict[str, Any]) -> list[str]:
    """The shapes the index file does not serve, each with the entry it needs."""
    composites = {(entry["collectionGroup"],
                   tuple((f["fieldPath"], f.get("order")) for f in entry["fields"]))
                  for entry in spec.get("indexes", []) if entry.get("queryScope") == "COLLECTION"}
    exempt = {(o["collectionGroup"], o["fieldPath"]) for o in spec.get("fieldOverrides", [])
              if not any(i.get("order") == "ASCENDING" and i.get("queryScope") == "COLLECTION"
                         for i in o.get("indexes", []))}
    problems = []
    for shape in shapes:
        group = COLLECTIONS[shape.collection]
        fields = {*shape.equals, *shape.ranges, *shape.order} - {NAME}
        for field in sorted(fields):
            if (group, field) in exempt:
                problems.append(f"{shape.name}: fieldOverrides drop {group}.{field}'s "
                                "ascending index")
        needed = shape.composite()
        if needed is None:
            continue
        wanted = tuple((field, "ASCENDING") for field in needed)
        if (group, wanted) not in composites:
            problems.append(f"{shape.name}: needs a composite index on {group} "
                            f"({', '.join(needed)}, ascending)")
    return problems


def test_every_query_shape_is_served_by_the_shipped_indexes() -> None:
    assert unserved(SHAPES, json.loads(INDEXES.read_text())) == []


def test_the_check_fails_for_a_shape_without_its_index() -> None:
    """A shape real Firestore refuses without a composite index is reported."""
    stuck = QueryShape("generating projects by age", "projects", equals=("status",),
                       order=("updatedAt",))
    [problem] = unserved((stuck,), {"indexes": []})
    assert "status, updatedAt" in problem
    served = {"indexes": [{"collectionGroup": "reel_maker_projects", "queryScope": "COLLECTION",
                           "fields": [{"fieldPath": "status", "order": "ASCENDING"},
                                      {"fieldPath": "updatedAt", "order": "ASCENDING"}]}]}
    assert unserved((stuck,), served) == []
    exempted = {"fieldOverrides": [{"collectionGroup": "reel_maker_jobs",
                                    "fieldPath": "status", "indexes": []}]}
    [problem] = unserved(tuple(s for s in SHAPES if s.collection == "jobs"
                               and s.ranges), exempted)
    assert "fieldOverrides drop reel_maker_jobs.status" in problem


@pytest.mark.parametrize(("shape", "composite"), [
    (QueryShape("x", "jobs", equals=("projectId",)), None),
    (QueryShape("x", "jobs", equals=("projectId", "status")), None),
    (QueryShape("x", "jobs", ranges=("status",)), None),
    (QueryShape("x", "jobs", order=("userId", NAME)), None),
    (QueryShape("x", "jobs", equals=("projectId",), ranges=("updatedAt",)),
     ("projectId", "updatedAt")),
    (QueryShape("x", "jobs", equals=("status",), order=("userId", NAME)), ("status", "userId")),
])
def test_composite_rule(shape: QueryShape, composite: tuple[str, ...] | None) -> None:
    assert shape.composite() == composite


def query_builds(source: str) -> list[tuple[int, str]]:
    """Where `source` builds a query: a builder method called, or a query message made."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        parts = name.split(".")
        if isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_CALLS:
            found.append((node.lineno, f".{node.func.attr}()"))
        elif QUERY_TYPES.intersection(parts) and parts[-1][:1].isupper():
            found.append((node.lineno, f"{name}()"))
    return found


def test_no_other_module_builds_a_query() -> None:
    """A query built elsewhere would escape the index check above."""
    found: list[str] = []
    for path in sorted((REPO / "reel_reconciler").rglob("*.py")):
        if path.name == "queries.py":
            continue
        found.extend(f"{path.relative_to(REPO)}:{line} {what}"
                     for line, what in query_builds(path.read_text()))
    assert found == [], "queries must be built in reel_reconciler/stores/queries.py"


def test_the_scan_sees_a_query_built_either_way() -> None:
    assert [what for _, what in query_builds(
        "q = StructuredQuery(from_=[])\n"
        "f = StructuredQuery.FieldFilter(op=1)\n"
        "c = jobs.where(filter=f).order_by('userId')\n"
        "raw = StructuredQuery.pb(q)\n")] == [
        "StructuredQuery()", "StructuredQuery.FieldFilter()", ".order_by()", ".where()"]


def test_a_query_filters_only_on_its_shapes_fields() -> None:
    """The builders take the filter fields from their shape: one the shape does not declare
    (which the index check would not see) is refused."""
    with pytest.raises(ValueError, match="not in the shape"):
        queries.shaped_query(queries.WATCHED_JOBS, "jobs", ("userId", "==", "u"))
    with pytest.raises(ValueError, match="not in the shape"):  # a range on an equality field
        queries.shaped_query(queries.WATCHED_JOBS, "jobs", ("status", ">=", "queued"))
    query = StructuredQuery.pb(queries.active_jobs("reel_maker_jobs"))
    assert [f.field_filter.field.field_path for f in query.where.composite_filter.filters] == [
        "status", "status"]
    ordered = StructuredQuery.pb(queries.by_user("jobs", "reel_maker_jobs", ["userId"]))
    assert [o.field.field_path for o in ordered.order_by] == ["userId", "__name__"]
