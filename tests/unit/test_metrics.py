"""The metrics the code registers are the ones docs/design.md (Metrics) lists; series primed
at zero, and forgotten with their reconciler."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from reel_reconciler import metrics

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
NOT_METRICS = {"reconciler", "user", "service", "unknown"}
"""Backquoted in the section but a label or one of its values, not a metric."""


def registered() -> set[str]:
    """Our metric names (without the prefix) as the registry has them; a counter's family is
    named without its `_total`."""
    return {family.name.removeprefix(metrics.PREFIX) + ("_total" if family.type == "counter"
                                                        else "")
            for family in REGISTRY.collect() if family.name.startswith(metrics.PREFIX)}


def documented() -> set[str]:
    """The names the design's Metrics section gives (up to the list of drift kinds)."""
    text = DESIGN.read_text()
    heading = re.search(r"^## [\d. ]*Metrics$", text, flags=re.MULTILINE)
    assert heading, f"{DESIGN} has no Metrics section"
    section = text[heading.end():].split("\n## ")[0].split("`kind` is one of")[0]
    names = {name for name, _ in re.findall(r"`(\w+)(\{[\w,]*\})?`", section)}
    return names - NOT_METRICS - {metrics.PREFIX}


def test_the_registry_and_the_design_list_the_same_metrics() -> None:
    code, design = registered(), documented()
    assert code, "no metric of ours in the registry: the comparison would prove nothing"
    assert code - design == set(), "registered but not in docs/design.md (Metrics)"
    assert design - code == set(), "in docs/design.md (Metrics) but never registered"


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
