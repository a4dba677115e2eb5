"""Every Prometheus metric of docs/design.md (Metrics), defined once. Labels never carry ids."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from reel_reconciler.model import FIRESTORE_RESTART_REASONS, Action, DriftKind, Trigger

PREFIX = "reel_reconciler_"
R = "reconciler"

RECONCILE_TOTAL = Counter(f"{PREFIX}reconcile_total", "Project reconciles by trigger and action",
                          [R, "trigger", "action"])
DRIFT_DETECTED_TOTAL = Counter(f"{PREFIX}drift_detected_total", "Drift found, by kind",
                               [R, "kind"])
CORRECTIONS_TOTAL = Counter(f"{PREFIX}corrections_total", "Drift corrected in Firestore, by kind",
                            [R, "kind"])
STALE_JOBS_TOTAL = Counter(f"{PREFIX}stale_jobs_total", "Jobs marked failed after timing out",
                           [R])
LISTENER_RESTARTS_TOTAL = Counter(f"{PREFIX}listener_restarts_total",
                                  "Firestore listener restarts", [R, "listener", "reason"])
LISTENER_SNAPSHOT_TOTAL = Counter(
    f"{PREFIX}listener_snapshot_documents_total",
    "Documents in the first snapshot of each listener (re)start: queued (new, or changed since "
    "the previous feed's last snapshot) or skipped (unchanged)", [R, "listener", "outcome"])
GCS_REQUESTS_TOTAL = Counter(f"{PREFIX}gcs_requests_total", "GCS requests by operation",
                             [R, "op", "outcome"])
FIRESTORE_REQUESTS_TOTAL = Counter(f"{PREFIX}firestore_requests_total",
                                   "Firestore requests by operation", [R, "op", "outcome"])
FIRESTORE_DOCUMENTS_READ_TOTAL = Counter(
    f"{PREFIX}firestore_documents_read_total",
    "Firestore documents read as billed (a query that finds none is one, a count() one per "
    "1,000 index entries), by the pass that read them", [R, "trigger"])
GCS_OPERATIONS_TOTAL = Counter(
    f"{PREFIX}gcs_operations_total",
    "GCS requests by price class (A: listings; B: metadata reads), by the pass that made them",
    [R, "class", "trigger"])
NOTIFICATIONS_TOTAL = Counter(
    f"{PREFIX}notifications_total",
    "GCS notifications received, by event type and what became of them",
    [R, "event_type", "outcome"])
API_REQUESTS_TOTAL = Counter(
    f"{PREFIX}api_requests_total",
    "Answers of the reconcile endpoint, by caller kind (user, service, unknown) and status code",
    [R, "caller", "code"])
API_REFUSED_LOGINS_TOTAL = Counter(
    f"{PREFIX}api_refused_logins_total",
    "Requests of the reconcile endpoint refused before a caller was identified, by the kind "
    "of token sent (user, service, unknown) and reason", [R, "kind", "reason"])
HEARTBEAT_CONFLICTS_TOTAL = Counter(
    f"{PREFIX}heartbeat_conflicts_total",
    "Heartbeat writes that found another writer's beat since our own (two processes run one "
    "reconciler)", [R])
FLAPPING_HOLDS_TOTAL = Counter(
    f"{PREFIX}flapping_holds_total",
    "Projects held because another writer kept undoing their corrections (each hold once)",
    [R])
RECOVERED_VIDEO_SECONDS_TOTAL = Counter(
    f"{PREFIX}recovered_video_seconds_total",
    "Seconds of video restored from GCS instead of regenerated", [R])

RECONCILE_DURATION_SECONDS = Histogram(f"{PREFIX}reconcile_duration_seconds",
                                       "Time to reconcile one project", [R, "trigger"],
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                                30))
TIME_TO_HEAL_SECONDS = Histogram(
    f"{PREFIX}time_to_heal_seconds",
    "From when a project went wrong to its correction, by drift kind", [R, "kind"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400))
SWEEP_DURATION_SECONDS = Histogram(f"{PREFIX}sweep_duration_seconds", "Time of a full sweep",
                                   [R], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600))

PROJECTS = Gauge(f"{PREFIX}projects", "Projects by status after the last sweep", [R, "status"])
PROJECTS_DRIFTED = Gauge(f"{PREFIX}projects_drifted", "Projects with drift in the last sweep",
                         [R])
LISTENER_UP = Gauge(f"{PREFIX}listener_up", "1 while a Firestore listener is healthy",
                    [R, "listener"])
LISTENER_LAST_EVENT = Gauge(f"{PREFIX}listener_last_event_timestamp_seconds",
                            "When a listener last heard from Firestore", [R, "listener"])
LAST_SWEEP_TIMESTAMP = Gauge(f"{PREFIX}last_sweep_timestamp_seconds",
                             "When the last full sweep completed", [R])
QUEUE_DEPTH = Gauge(f"{PREFIX}queue_depth", "Project ids waiting in the work queue", [R])
BREAKER_TRIPPED = Gauge(f"{PREFIX}breaker_tripped",
                        "1 while destructive corrections are paused by the breaker", [R])
RUNNING = Gauge(f"{PREFIX}running",
                "1 while a runtime of this reconciler runs in this process; 0 while it is "
                "wanted but not running (connecting, retrying, an invalid spec)", [R])
WANTED = Gauge(f"{PREFIX}wanted",
               "1 when this reconciler should run (not suspended), as this process sees it",
               [R])
RESOURCES_WANTED = Gauge(f"{PREFIX}resources_wanted",
                         "ReelReconcilers not suspended, as this operator last saw them")
RESOURCES_RUNNING = Gauge(f"{PREFIX}resources_running",
                          "ReelReconcilers whose runtime runs in this operator process")

RANGE_SWEEP_AGE = Gauge(
    f"{PREFIX}range_sweep_age_seconds",
    "Seconds since each key range of a distributed sweep round was last reported swept (or "
    "first published, if never); range is the range's index in the round", [R, "range"])
ROUND_BACKLOG = Gauge(f"{PREFIX}sweep_round_backlog",
                      "Ranges of the current distributed sweep round published and not yet "
                      "reported", [R])
SWEEP_INTERVAL_SECONDS = Gauge(f"{PREFIX}sweep_interval_seconds",
                               "The reconciler's sweep interval (spec.sweep.interval), which "
                               "the range age alert compares with", [R])

LISTENERS = ("projects", "jobs", "heartbeat")
"""The Firestore listeners; `notifications` joins them where a subscription is set."""
SNAPSHOT_OUTCOMES = ("queued", "skipped")
FEED = "feed"
"""The pass of the documents the Firestore listeners' Listen streams deliver."""
OTHER = "other"
"""The pass of a read no pass claimed (a start's probe, a heartbeat's conflict)."""
PASSES = (*(trigger.value for trigger in Trigger), FEED, OTHER)
"""Values of `trigger` on the billed-units counters: a reconcile's trigger, or one of those."""
GCS_PRICE_CLASSES = ("A", "B")
_PER_RECONCILER: tuple[tuple[Counter | Gauge | Histogram, tuple[str, ...]], ...] = (
    (RECONCILE_TOTAL, (R, "trigger", "action")),
    (DRIFT_DETECTED_TOTAL, (R, "kind")),
    (CORRECTIONS_TOTAL, (R, "kind")),
    (STALE_JOBS_TOTAL, (R,)),
    (LISTENER_RESTARTS_TOTAL, (R, "listener", "reason")),
    (LISTENER_SNAPSHOT_TOTAL, (R, "listener", "outcome")),
    (GCS_REQUESTS_TOTAL, (R, "op", "outcome")),
    (FIRESTORE_REQUESTS_TOTAL, (R, "op", "outcome")),
    (FIRESTORE_DOCUMENTS_READ_TOTAL, (R, "trigger")),
    (GCS_OPERATIONS_TOTAL, (R, "class", "trigger")),
    (RECOVERED_VIDEO_SECONDS_TOTAL, (R,)),
    (HEARTBEAT_CONFLICTS_TOTAL, (R,)),
    (BREAKER_TRIPPED, (R,)),
    (FLAPPING_HOLDS_TOTAL, (R,)),
    (NOTIFICATIONS_TOTAL, (R, "event_type", "outcome")),
    (API_REQUESTS_TOTAL, (R, "caller", "code")),
    (API_REFUSED_LOGINS_TOTAL, (R, "kind", "reason")),
    (RECONCILE_DURATION_SECONDS, (R, "trigger")),
    (TIME_TO_HEAL_SECONDS, (R, "kind")),
    (SWEEP_DURATION_SECONDS, (R,)),
    (PROJECTS, (R, "status")),
    (PROJECTS_DRIFTED, (R,)),
    (LISTENER_UP, (R, "listener")),
    (LISTENER_LAST_EVENT, (R, "listener")),
    (LAST_SWEEP_TIMESTAMP, (R,)),
    (QUEUE_DEPTH, (R,)),
    (RANGE_SWEEP_AGE, (R, "range")),
    (ROUND_BACKLOG, (R,)),
    (SWEEP_INTERVAL_SECONDS, (R,)),
)


def prime(reconciler: str) -> None:
    """Create a reconciler's counters at zero, so that their first increase is visible to
    rate() and increase() instead of appearing as a series that starts above zero."""
    for trigger in Trigger:
        for action in Action:
            RECONCILE_TOTAL.labels(reconciler, trigger.value, action.value)
    for kind in DriftKind:
        DRIFT_DETECTED_TOTAL.labels(reconciler, kind.value)
        CORRECTIONS_TOTAL.labels(reconciler, kind.value)
    for listener in LISTENERS:
        for reason in FIRESTORE_RESTART_REASONS:
            LISTENER_RESTARTS_TOTAL.labels(reconciler, listener, reason.value)
        for outcome in SNAPSHOT_OUTCOMES:
            LISTENER_SNAPSHOT_TOTAL.labels(reconciler, listener, outcome)
    for source in PASSES:
        FIRESTORE_DOCUMENTS_READ_TOTAL.labels(reconciler, source)
        for price_class in GCS_PRICE_CLASSES:
            GCS_OPERATIONS_TOTAL.labels(reconciler, price_class, source)
    STALE_JOBS_TOTAL.labels(reconciler)
    HEARTBEAT_CONFLICTS_TOTAL.labels(reconciler)
    BREAKER_TRIPPED.labels(reconciler).set(0)
    FLAPPING_HOLDS_TOTAL.labels(reconciler)
    RECOVERED_VIDEO_SECONDS_TOTAL.labels(reconciler)
    QUEUE_DEPTH.labels(reconciler).set(0)


def presence(reconciler: str, wanted: bool, running: bool) -> None:
    """Whether a reconciler should run and does, here: the series that shows a reconciler
    that is not running (its other series exist only while it runs)."""
    WANTED.labels(reconciler).set(1 if wanted else 0)
    RUNNING.labels(reconciler).set(1 if running else 0)


def absent(reconciler: str) -> None:
    """This process no longer supervises the reconciler (deleted, or handed to a replica)."""
    for gauge in (WANTED, RUNNING):
        with contextlib.suppress(KeyError):
            gauge.remove(reconciler)


def forget(reconciler: str) -> None:
    """Drop every series of a reconciler that stopped (suspended or deleted), so that its
    last values do not page anyone."""
    for metric, names in _PER_RECONCILER:
        stale = set()
        for family in metric.collect():
            for sample in family.samples:
                if sample.labels.get("reconciler") == reconciler:
                    stale.add(tuple(sample.labels[name] for name in names))
        for labels in stale:
            metric.remove(*labels)
