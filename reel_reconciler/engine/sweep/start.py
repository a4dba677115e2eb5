"""What a sweep takes and checks before it reads a page: the stores as streams, and a bucket
that lists nothing where projects claim clips."""

from __future__ import annotations

from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.stores import ListedObjects, StreamedProjects


def streams_of(engine: Pipeline) -> tuple[StreamedProjects, ListedObjects]:
    """The engine's stores as a sweep reads them: streams, not one read per project."""
    firestore, gcs = engine.firestore, engine.gcs
    if not isinstance(firestore, StreamedProjects) or not isinstance(gcs, ListedObjects):
        raise TypeError("a sweep needs stores that stream (StreamedProjects, ListedObjects)")
    return firestore, gcs


def suspect_an_empty_bucket(engine: Pipeline) -> None:
    """A bucket with nothing under the root while projects claim clips is a configuration
    error (a wrong bucket or prefix), not a mass deletion: the first destructive correction of
    such a sweep trips the breaker instead of being written, if the bucket still lists nothing
    then (the app may have written its first clips since)."""
    location = engine.policy.location
    root = location.root_prefix + "/"

    def empty() -> bool:
        return not engine.gcs.any_under(root)

    if empty():
        engine.breaker.suspect(f"bucket {location.bucket!r} lists nothing under {root} while "
                               "projects claim clips there: a wrong bucket or prefix?", empty)
