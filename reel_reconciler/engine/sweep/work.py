"""The messages of a sweep round spread over replicas (docs/design.md, Distributed rounds).

A work message is one range of one round: everything a worker needs to sweep it without
asking anyone (where the stores are, observe or enforce, the reconciler's generation), as a
JSON body, with the fields a worker filters on repeated as attributes. A timed round's item
carries its schedule and whether its range is passed in full or as a delta (`pass`); a forced
round's carries no schedule and passes every range in full, keeping no fingerprints, as a
forced local sweep. A range result is what the worker sends back: the counts the coordinator
adds up into the round's `SweepResult`, and, from a forced round, the range's projects per
user (a `WorkProfile`, at most a few hundred KB whatever the number of users) for the next
split points.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reel_reconciler.config import format_duration
from reel_reconciler.engine.sweep.delta import Schedule
from reel_reconciler.engine.sweep.ranges import KeyRange, WorkProfile
from reel_reconciler.engine.sweep.result import SweepResult
from reel_reconciler.model import Action, ReconcilerId
from reel_reconciler.spec import ReconcilerSpec

KIND = "reel-reconciler.sweep-range"
VERSION = 1
"""`pass` and `schedule` came later as optional fields: a worker without them sweeps such an
item in full, which is correct, only dearer."""
FULL, DELTA = "full", "delta"
MAX_SECONDS = 10 * 365 * 86400
"""The longest interval or fullEvery a schedule may carry (ten years: a typo, not a plan)."""


def spec_snapshot(spec: ReconcilerSpec) -> dict[str, Any]:
    """The spec as the CR would write it (durations as `30m`), so that it parses again."""
    snapshot: dict[str, Any] = _plain(spec.model_dump(by_alias=True, exclude_none=True))
    return snapshot


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def call_off_id(round_id: str) -> str:
    return f"{round_id}-stop"


@dataclass(frozen=True)
class WorkItem:
    """One range of one round, as published to the work topic."""

    reconciler: ReconcilerId
    generation: int
    """The reconciler's generation when the round started: a worker drops older ones."""
    spec: dict[str, Any]
    """The spec snapshot (`spec_snapshot`): stores, mode, settle window, concurrency..."""
    round_id: str
    index: int
    count: int
    """Ranges in the round."""
    key_range: KeyRange
    schedule: Schedule | None = None
    """A timed round's schedule (`pass` then says how); None: a forced round, all full."""
    full: bool = True
    """Whether the range is passed in full (a delta round's range due for it, or forced)."""

    def __post_init__(self) -> None:
        if self.schedule is None and not self.full:
            raise ValueError("a delta pass needs its round's schedule")

    @property
    def observe(self) -> bool:
        return self.spec.get("mode") == "Observe"

    @property
    def result_id(self) -> str:
        """The id of this range's result document: one per range and round."""
        return f"{self.round_id}-{self.index:04d}"

    @property
    def stop_id(self) -> str:
        """The id of the document that calls this range's round off (its coordinator
        stopped: Observe, suspend, delete, failover): one per round."""
        return call_off_id(self.round_id)

    def parsed_spec(self) -> ReconcilerSpec:
        return ReconcilerSpec.parse(self.spec)

    def body(self) -> bytes:
        return json.dumps({
            "kind": KIND, "version": VERSION, "reconciler": self.reconciler.label,
            "generation": self.generation, "spec": self.spec, "mode": self.spec.get("mode"),
            "round": self.round_id, "index": self.index, "count": self.count,
            "range": self.key_range.as_json(), "pass": FULL if self.full else DELTA,
            **({} if self.schedule is None else {"schedule": _schedule_json(self.schedule)})},
            separators=(",", ":")).encode()

    def attributes(self) -> dict[str, str]:
        return {"kind": KIND, "reconciler": self.reconciler.label,
                "generation": str(self.generation), "round": self.round_id,
                "index": str(self.index)}

    @classmethod
    def parse(cls, data: bytes) -> WorkItem:
        """A message's body; ValueError (one line) for anything that is not a work item."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("kind") != KIND:
            raise ValueError(f"not a {KIND} message")
        if body.get("version") != VERSION:
            raise ValueError(f"version {body.get('version')!r} is not {VERSION}")
        try:
            item = cls(
                reconciler=ReconcilerId.from_label(_text(body, "reconciler")),
                generation=_whole(body, "generation"), spec=_mapping(body, "spec"),
                round_id=_text(body, "round"), index=_whole(body, "index"),
                count=_whole(body, "count"), key_range=KeyRange.from_json(_mapping(body, "range")),
                schedule=(_schedule(_mapping(body, "schedule")) if "schedule" in body else None),
                full=_pass(body))
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"malformed: {exc}") from None
        if not 0 <= item.index < item.count:
            raise ValueError(f"range index {item.index} outside a round of {item.count}")
        return item


def _schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {"now": schedule.now.isoformat(), "interval": schedule.interval.total_seconds(),
            "fullEvery": schedule.full_every.total_seconds()}


def _schedule(body: dict[str, Any]) -> Schedule:
    try:
        now = datetime.fromisoformat(_text(body, "now"))
    except ValueError as exc:
        raise ValueError(f"schedule: {exc}") from None
    if now.tzinfo is None:
        raise ValueError("schedule: now has no time zone")
    interval, full_every = (_seconds(body, key) for key in ("interval", "fullEvery"))
    return Schedule(now, timedelta(seconds=interval), timedelta(seconds=full_every))


def _seconds(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not 0 < value < MAX_SECONDS):
        raise ValueError(f"schedule: {key} {value!r} is not a positive number of seconds")
    return float(value)


def _pass(body: dict[str, Any]) -> bool:
    value = body.get("pass", FULL)
    if value not in (FULL, DELTA):
        raise ValueError(f"pass {value!r} is not {FULL!r} or {DELTA!r}")
    return bool(value == FULL)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"{key} {value!r} is not a name")
    return value


def _whole(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} {value!r} is not a whole number")
    return value


def _mapping(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not an object")
    return value


@dataclass(frozen=True)
class RangeResult:
    """What a worker did with one range, as its result document holds it."""

    index: int
    scanned: int
    seconds: float
    actions: dict[str, int]
    statuses: dict[str, int]
    gcs_requests: int
    firestore_requests: int
    aborted: str | None
    worker: str
    delta: dict[str, int] | None = None
    """A delta round's counts for the range (`SweepResult.delta`); None: a full sweep."""
    profile: WorkProfile | None = None
    """Projects per user, for the next split points: from a forced round's ranges only."""
    documents_read: int = 0
    """Firestore documents read, as billed: the round's cost adds up its workers'."""

    @classmethod
    def from_sweep(cls, index: int, result: SweepResult, worker: str) -> RangeResult:
        return cls(index, result.scanned, result.duration_seconds, result.counts(),
                   dict(result.statuses), result.gcs_requests, result.firestore_requests,
                   result.aborted, worker, None if result.delta is None else dict(result.delta),
                   result.profile, result.documents_read)

    def fields(self, item: WorkItem) -> dict[str, Any]:
        body: dict[str, Any] = {
            "round": item.round_id, "reconciler": item.reconciler.label,
            "generation": item.generation, "index": self.index, "count": item.count,
            **{f"range{key.title()}": value for key, value in item.key_range.as_json().items()
               if value is not None},
            "scanned": self.scanned, "durationSeconds": round(self.seconds, 3),
            "actions": self.actions, "statuses": self.statuses,
            "gcsRequests": self.gcs_requests, "firestoreRequests": self.firestore_requests,
            "documentsRead": self.documents_read, "worker": self.worker}
        if self.aborted is not None:
            body["aborted"] = self.aborted
        if self.delta is not None:
            body["delta"] = self.delta
        if self.profile is not None:
            body["profile"] = self.profile.encode()
        return body

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> RangeResult:
        return cls(int(data["index"]), int(data["scanned"]), float(data["durationSeconds"]),
                   {str(k): int(v) for k, v in dict(data.get("actions") or {}).items()},
                   {str(k): int(v) for k, v in dict(data.get("statuses") or {}).items()},
                   int(data.get("gcsRequests") or 0), int(data.get("firestoreRequests") or 0),
                   data.get("aborted"), str(data.get("worker") or ""),
                   None if data.get("delta") is None
                   else {str(k): int(v) for k, v in dict(data["delta"]).items()},
                   None if data.get("profile") is None
                   else WorkProfile.decode(bytes(data["profile"])),
                   int(data.get("documentsRead") or 0))

    def add_to(self, result: SweepResult) -> None:
        """Count this range into the round's result."""
        result.scanned += self.scanned
        result.actions.update(Counter({Action(k): v for k, v in self.actions.items()}))
        result.statuses.update(Counter(self.statuses))
        result.gcs_requests += self.gcs_requests
        result.firestore_requests += self.firestore_requests
        result.documents_read += self.documents_read
        if self.aborted is not None and result.aborted is None:
            result.aborted = f"range {self.index}: {self.aborted}"
        if self.delta is not None and result.delta is not None:
            for key, value in self.delta.items():
                result.delta[key] = result.delta.get(key, 0) + value
