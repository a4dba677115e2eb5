"""Distributed sweep rounds (issue #26): the work message survives its trip through
Pub/Sub as JSON, anything else is refused in one line, a worker drops what it must not
sweep without building an engine, and the commands refuse bad resource names in one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.engine import Engine
from reel_reconciler.engine.sweep.ranges import KeyRange
from reel_reconciler.engine.sweep.result import SweepResult
from reel_reconciler.engine.sweep.work import RangeResult, WorkItem, spec_snapshot
from reel_reconciler.model import Action, ReconcilerId
from reel_reconciler.runtime.worker import SweepWorker
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores.work import Outcome

SPEC = ReconcilerSpec.parse({
    "firestore": {"project": "p", "database": "db"}, "storage": {"bucket": "clips"},
    "mode": "Observe", "settle": "45s", "sweep": {"interval": "10m", "ranges": 16, "distribution": {
        "topic": "projects/p/topics/work", "subscription": "projects/p/subscriptions/work"}},
    "staleJobs": {"timeout": "1h"}})
WHO = ReconcilerId("reels", "prod")


def item(generation: int = 3, index: int = 2, key_range: KeyRange | None = None) -> WorkItem:
    return WorkItem(WHO, generation, spec_snapshot(SPEC), "r1", index, 16,
                    key_range or KeyRange("Ab", "c0"))


def test_a_work_item_comes_back_as_it_was_sent() -> None:
    sent = item()
    received = WorkItem.parse(sent.body())
    assert received == sent
    assert received.parsed_spec() == SPEC
    assert received.observe
    assert sent.attributes() == {"kind": "reel-reconciler.sweep-range", "reconciler": "prod.reels",
                                 "generation": "3", "round": "r1", "index": "2"}
    assert WorkItem.parse(item(key_range=KeyRange("zz")).body()).key_range == KeyRange("zz")


def _body(**changes: Any) -> bytes:
    body = json.loads(item().body())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(("data", "problem"), [
    (b"\xff\xfe", "not JSON"),
    (b"{", "not JSON"),
    (b"[]", "not a reel-reconciler.sweep-range message"),
    (_body(kind="other"), "not a reel-reconciler.sweep-range message"),
    (_body(version=2), "version 2 is not 1"),
    (_body(index=16), "range index 16 outside a round of 16"),
    (_body(generation="3"), "generation '3' is not a whole number"),
    (_body(generation=True), "generation True is not a whole number"),
    (_body(reconciler="a/b"), "reconciler 'a/b' is not a name"),
    (_body(spec=[]), "spec is not an object"),
    (_body(range={"lo": "a/", "hi": None}), "range bound 'a/' is not made of [0-9A-Za-z]"),
    (_body(range={"lo": "b", "hi": "a"}), "empty range"),
])
def test_anything_but_a_work_item_is_refused_in_one_line(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]*$") as caught:
        WorkItem.parse(data)
    assert problem in str(caught.value)


def test_a_range_result_adds_up_into_the_rounds_result() -> None:
    one = SweepResult(scanned=5, gcs_requests=2, firestore_requests=3, duration_seconds=1.5)
    one.actions.update({Action.NO_CHANGE: 4, Action.CORRECTED: 1})
    one.statuses.update({"ready": 5})
    stored = RangeResult.from_sweep(2, one, "w1").fields(item())
    assert (stored["rangeLo"], stored["rangeHi"]) == ("Ab", "c0")
    assert "aborted" not in stored
    total = SweepResult()
    for _ in range(2):
        RangeResult.from_fields(stored).add_to(total)
    assert (total.scanned, total.drifted, total.statuses["ready"]) == (10, 2, 10)
    assert (total.gcs_requests, total.firestore_requests, total.aborted) == (4, 6, None)
    one.aborted = "stopped early: outage"
    RangeResult.from_fields(RangeResult.from_sweep(7, one, "w2").fields(item())).add_to(total)
    assert total.aborted == "range 7: stopped early: outage"


class Connects:
    """Engine construction, refused: what a worker does before it sweeps."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __call__(self, settings: Settings, reconciler: ReconcilerId) -> Engine:
        self.asked.append((settings.bucket, reconciler.label))
        raise ConfigError("stores unreachable")


def test_a_worker_acks_malformed_and_stale_messages_without_sweeping(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    connects = Connects()
    worker = SweepWorker("projects/p/subscriptions/work", 2, connector=connects)
    assert worker.handle(b"junk", {"x": "y"}) is Outcome.DONE
    assert "work message dropped: not JSON" in caplog.text
    assert connects.asked == []
    assert worker.handle(item(generation=5).body(), {}) is Outcome.DONE  # refused: acked
    assert connects.asked == [("clips", "prod.reels")]
    assert worker.handle(item(generation=4).body(), {}) is Outcome.DONE
    assert "stale sweep range dropped" in caplog.text
    assert connects.asked == [("clips", "prod.reels")], "an older generation is not swept"
    worker.stop(timeout=1)
    assert worker.handle(item(generation=6).body(), {}) is Outcome.AGAIN, "stopping: handed back"


@pytest.mark.parametrize(("argv", "env", "problem"), [
    (["worker"], {}, "a worker needs --work-subscription or REEL_WORK_SUBSCRIPTION"),
    (["worker", "--work-subscription", "work"], {},
     "invalid --work-subscription 'work': expected projects/PROJECT/subscriptions/NAME"),
    (["worker"], {"REEL_WORK_SUBSCRIPTION": "projects/p/topics/t"},
     "invalid REEL_WORK_SUBSCRIPTION 'projects/p/topics/t'"),
    (["worker", "--work-subscription", "projects/p/subscriptions/s", "--sweep-parallel", "0"],
     {}, "invalid --sweep-parallel '0': expected a whole number from 1 to 64"),
    (["operator", "--work-subscription", "projects/p/subs/s"], {},
     "invalid --work-subscription 'projects/p/subs/s'"),
    (["operator"], {"REEL_WORK_SUBSCRIPTION": "projects/p/subscriptions/s",
                    "REEL_SWEEP_PARALLEL": "65"},
     "invalid REEL_SWEEP_PARALLEL '65': expected a whole number from 1 to 64"),
    (["watch", "--bucket", "b", "--work-topic", "projects/p/topics/t"], {},
     "--work-topic needs --work-subscription too"),
    (["watch", "--bucket", "b"], {"REEL_WORK_SUBSCRIPTION": "projects/p/subscriptions/s"},
     "REEL_WORK_SUBSCRIPTION needs --work-topic too"),
    (["watch", "--bucket", "b", "--work-topic", "projects/p/subscriptions/s",
      "--work-subscription", "projects/p/subscriptions/s"], {},
     "invalid --work-topic 'projects/p/subscriptions/s': expected projects/PROJECT/topics/NAME"),
])
def test_work_paths_are_checked_in_one_line(argv: list[str], env: dict[str, str],
                                            problem: str) -> None:
    """The installed command, as a user runs it: refused before anything starts."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("REEL_WORK_TOPIC", "REEL_WORK_SUBSCRIPTION", "REEL_SWEEP_PARALLEL")}
    done = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", *argv],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert problem in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
