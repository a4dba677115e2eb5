"""Metric names of docs/design.md (Metrics), series primed at zero, and forgotten with their
reconciler."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from reel_reconciler import metrics

DESIGN_NAMES = [
    "reconcile_total", "drift_detected_total", "corrections_total", "stale_jobs_total",
    "listener_restarts_total", "listener_snapshot_documents_total", "gcs_requests_total",
    "firestore_requests_total", "recovered_video_seconds_total", "reconcile_duration_seconds",
    "sweep_duration_seconds",
    "projects", "projects_drifted", "listener_up", "listener_last_event_timestamp_seconds",
    "last_sweep_timestamp_seconds", "queue_depth", "heartbeat_conflicts_total", "running",
    "wanted", "resources_wanted", "resources_running", "breaker_tripped",
]


def test_every_design_metric_is_defined() -> None:
    text = generate_latest(REGISTRY).decode()
    for name in DESIGN_NAMES:
        assert f"# TYPE reel_reconciler_{name} " in text, name


def test_prime_then_forget() -> None:
    metrics.prime("ns.primed")
    metrics.prime("ns.other")
    metrics.LISTENER_UP.labels("ns.primed", "projects").set(1)
    metrics.RECONCILE_DURATION_SECONDS.labels("ns.primed", "sweep").observe(0.2)
    text = generate_latest(REGISTRY).decode()
    assert ('reel_reconciler_stale_jobs_total{reconciler="ns.primed"} 0.0' in text)
    assert ('reel_reconciler_reconcile_total{action="corrected",reconciler="ns.primed",'
            'trigger="listener"} 0.0' in text)
    metrics.forget("ns.primed")
    text = generate_latest(REGISTRY).decode()
    assert 'reconciler="ns.primed"' not in text
    assert 'reel_reconciler_stale_jobs_total{reconciler="ns.other"} 0.0' in text
    metrics.forget("ns.other")


def test_presence_is_kept_apart_from_the_runtimes_series() -> None:
    """A runtime's stop forgets its series; whether it is wanted and running stays with its
    supervisor until the resource is gone from this process."""
    metrics.prime("ns.seen")
    metrics.presence("ns.seen", wanted=True, running=False)
    metrics.forget("ns.seen")
    text = generate_latest(REGISTRY).decode()
    assert 'reel_reconciler_wanted{reconciler="ns.seen"} 1.0' in text
    assert 'reel_reconciler_running{reconciler="ns.seen"} 0.0' in text
    metrics.absent("ns.seen")
    metrics.absent("ns.seen")
    assert 'reconciler="ns.seen"' not in generate_latest(REGISTRY).decode()
