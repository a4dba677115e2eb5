"""The billed units the stores count (documents read, GCS operations by class), by pass, on
the stores in memory: the sums the price lists charge, and the metrics that show them. The
Firestore adapter's own counting is proven on the emulator (tests/integration/
test_sweep_stream.py)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from devkit.memory import EPOCH, StreamingObjects, StreamingProjects
from reel_reconciler.config import Settings
from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stale import cleanup_stale_jobs
from reel_reconciler.engine.sweep import sweep
from reel_reconciler.model import Trigger
from reel_reconciler.stores.billing import count_billed_reads, reading_for
from reel_reconciler.stores.firestore import IN_LIMIT
from tests.support.recording import TESTS

ROOT = "reel-maker"
PAGE = 5


def documents_read(trigger: str) -> float:
    value = REGISTRY.get_sample_value("reel_reconciler_firestore_documents_read_total",
                                      {"reconciler": TESTS.label, "trigger": trigger})
    return value or 0.0


def operations(price_class: str, trigger: str) -> float:
    value = REGISTRY.get_sample_value("reel_reconciler_gcs_operations_total",
                                      {"reconciler": TESTS.label, "class": price_class,
                                       "trigger": trigger})
    return value or 0.0


def world(projects_count: int, users: int = 6) -> tuple[StreamingProjects, StreamingObjects]:
    """Healthy projects spread over `users`, one completed job and two clips each."""
    projects, objects = StreamingProjects(), StreamingObjects(page_size=7)
    for n in range(projects_count):
        user, project_id = f"user-{n % users}", f"p{n:04d}"
        clips = [f"{ROOT}/{user}/{project_id}/raw/job-{project_id}/prompt-{i:02d}/clip.mp4"
                 for i in range(2)]
        projects.put_project(project_id, {
            "userId": user, "title": "t", "status": "ready", "durationSeconds": 8,
            "promptList": ["a", "b"], "clipFilenames": clips})
        projects.put_job(f"job-{project_id}", {
            "projectId": project_id, "userId": user, "status": "completed",
            "promptCount": 2, "createdAt": EPOCH, "updatedAt": EPOCH})
        for name in clips:
            objects.put(name)
    return projects, objects


def engine_on(projects: StreamingProjects, objects: StreamingObjects) -> Pipeline:
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s", page_size=PAGE)
    return Pipeline(settings, projects, objects, Recorder(TESTS),
                    clock=lambda: EPOCH + timedelta(days=1))


def streamed_reads(documents: int) -> int:
    """A stream of `documents` in pages of PAGE: each document, and one for a last page
    that found none (the page after a full one)."""
    return documents + (documents % PAGE == 0)


@pytest.mark.parametrize("count", [48, 50])
def test_a_sweep_reads_each_project_and_job_once_and_the_metric_says_so(count: int) -> None:
    projects, objects = world(count)
    engine = engine_on(projects, objects)
    before = documents_read("sweep"), operations("A", "sweep"), operations("B", "sweep")
    result = sweep(engine, dry_run=True)
    assert result.scanned == count
    # projects and jobs streamed, no active job (billed one), one count() under 1,000
    expected = 2 * streamed_reads(count) + 1 + 1
    assert result.documents_read == expected
    assert result.documents_read >= count
    assert documents_read("sweep") - before[0] == expected
    pages = math.ceil(2 * count / objects.page_size)
    assert result.gcs_class_a == result.gcs_requests == pages
    assert operations("A", "sweep") - before[1] == pages
    assert result.gcs_class_b == 0 == operations("B", "sweep") - before[2]
    body = result.as_json()
    assert body["firestoreDocumentsRead"] == expected
    assert (body["gcsClassA"], body["gcsClassB"]) == (pages, 0)
    assert body["scanned"] == count


def test_reads_count_for_the_trigger_of_the_reconcile_that_made_them() -> None:
    projects, objects = world(40)
    engine = engine_on(projects, objects)
    ids = sorted(projects.projects)
    api, sweeps, listener = documents_read("api"), documents_read("sweep"), \
        documents_read("listener")
    engine.reconcile_many(ids, Trigger.API, dry_run=True)
    # each project asked for, and one jobs query per IN_LIMIT projects (each finds jobs)
    assert documents_read("api") - api == len(ids) + len(ids)
    assert documents_read("sweep") == sweeps
    assert documents_read("listener") == listener
    with reading_for(Trigger.LISTENER.value):
        projects.get_projects(["gone"])
    assert documents_read("listener") - listener == 1, "a read that found none costs one"
    lists = operations("A", "listener")
    objects.list_prefix(f"{ROOT}/user-0/")  # no pass set: counted as other
    objects.stat(f"{ROOT}/user-0/p0000/raw/clip.mp4")
    assert operations("A", "listener") == lists
    assert operations("A", "other") >= 1
    assert operations("B", "other") >= 1


def test_a_jobs_query_that_finds_none_is_billed_one_read_per_query() -> None:
    projects, _ = world(0)
    before = documents_read("cli")
    with reading_for(Trigger.CLI.value):
        projects.jobs_of_projects([f"none-{i}" for i in range(IN_LIMIT + 1)])
    assert documents_read("cli") - before == 2


def test_the_stale_job_cleanup_reads_as_its_trigger() -> None:
    projects, objects = world(3)
    engine = engine_on(projects, objects)
    sweeps, stale = documents_read("sweep"), documents_read("stale_job")
    cleanup_stale_jobs(engine, dry_run=True)
    assert documents_read("stale_job") - stale == 1, "the active jobs query found none"
    assert documents_read("sweep") == sweeps


@pytest.mark.parametrize(("entries", "reads"),
                         [(0, 1), (1, 1), (1000, 1), (1001, 2), (1500, 2), (1_000_000, 1000)])
def test_a_count_is_billed_one_read_per_thousand_index_entries(entries: int,
                                                               reads: int) -> None:
    assert count_billed_reads(entries) == reads
