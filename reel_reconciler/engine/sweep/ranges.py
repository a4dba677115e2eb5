"""Key ranges: the userId keyspace cut into ranges a sweep can read independently.

A range `[lo, hi)` reads the projects and jobs with `lo <= userId < hi` from Firestore and
lists `{root}/` from `{root}/lo` up to `{root}/hi` in GCS. Both stores order strings by their
UTF-8 bytes, but a user's objects sit under `{userId}/`, and `/` sorts below `-` and `.`:
`ab` < `ab-c` as userIds, yet `ab-c/` < `ab/` as folders. A split point made only of
`[0-9A-Za-z]` (all above `/`) puts every user on the same side of it in both orders, so the
two orders may differ inside a range, never across one. Users `ab` and `ab-c` therefore
always share a range: no such split point lies between them.

A range is a plain value (two strings) so that a message can carry it.
"""

from __future__ import annotations

import json
import string
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from reel_reconciler import defaults

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
"""The characters of split points, in byte order."""
_ALLOWED = frozenset(ALPHABET)
MAX_RANGES = defaults.SWEEP_RANGES_MAX
PROFILE_BYTES = 256_000
"""Bytes of encoded work profile a range's result may carry: a quarter of a Firestore
document (2,048 buckets of 28-character userIds take about 100 KB)."""


@dataclass(frozen=True, order=True)
class KeyRange:
    """userIds `lo <= userId < hi`; `hi` None: no upper bound. `lo` "" and `hi` None is the
    whole keyspace, read without a filter (so userIds of any type, as an unranged sweep)."""

    lo: str = ""
    hi: str | None = None

    def __post_init__(self) -> None:
        for bound in (self.lo, self.hi or ""):
            if not is_split_point(bound) and bound != "":
                raise ValueError(f"range bound {bound!r} is not made of [0-9A-Za-z]")
        if self.hi is not None and self.hi <= self.lo:
            raise ValueError(f"empty range [{self.lo!r}, {self.hi!r})")

    @property
    def whole(self) -> bool:
        return self.lo == "" and self.hi is None

    @property
    def bounds(self) -> tuple[str, str | None] | None:
        """The stores' filter: None for the whole keyspace (no filter at all)."""
        return None if self.whole else (self.lo, self.hi)

    def holds(self, user: str) -> bool:
        return self.lo <= user and (self.hi is None or user < self.hi)

    def as_json(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> KeyRange:
        return cls(str(body.get("lo") or ""), body.get("hi"))

    def __str__(self) -> str:
        return f"[{self.lo or '-inf'}, {self.hi or '+inf'})"


def is_split_point(value: str) -> bool:
    return bool(value) and all(char in _ALLOWED for char in value)


def ranges_from_splits(splits: Sequence[str]) -> list[KeyRange]:
    """The ranges between ascending split points; no split point: the whole keyspace."""
    if list(splits) != sorted(set(splits)):
        raise ValueError("split points must be distinct and ascending")
    bounds: list[str | None] = ["", *splits, None]
    return [KeyRange(str(lo), hi) for lo, hi in pairwise(bounds)]


def even_splits(count: int) -> list[str]:
    """`count - 1` split points spread evenly over three characters of the alphabet: even
    work when userIds are random over it (Firebase Auth uids are)."""
    check_count(count)
    base = len(ALPHABET)
    points = []
    for k in range(1, count):
        position = k * base ** 3 // count
        points.append(ALPHABET[position // base ** 2] + ALPHABET[position // base % base]
                      + ALPHABET[position % base])
    return points


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_RANGES:
        raise ValueError(f"ranges must be between 1 and {MAX_RANGES}, not {count}")


def split_between(left: str, right: str) -> str | None:
    """A split point `s` with `left < s <= right` (so `left` falls below it and `right` at or
    above it), or None when no string of the alphabet lies there (`ab` and `ab-c`)."""
    if not left < right:
        return None
    for index, char in enumerate(right):
        below = max((c for c in ALPHABET if c <= char), default=None)
        if below is None:
            return None
        candidate = right[:index] + below
        if candidate > left:
            return candidate
        if below != char:  # every extension of `candidate` still sorts below `right`
            return _above(left, candidate) if left.startswith(candidate) else None
    return None


def _above(left: str, head: str) -> str | None:
    """The shortest string of the alphabet starting with `head` (a prefix of `left`) that
    sorts above `left`, or None."""
    rest = left[len(head):]
    if not rest:
        return head + ALPHABET[0]
    bigger = min((c for c in ALPHABET if c > rest[0]), default=None)
    if bigger is not None:
        return head + bigger
    return _above(left, head + rest[0]) if rest[0] in _ALLOWED else None


class WorkProfile:
    """Projects per user in userId order, kept coarse: buckets of consecutive users, merged
    pairwise whenever there are more than `limit`, so memory stays bounded whatever the
    number of users. Each bucket remembers the user before it, which is where a split point
    can go."""

    def __init__(self, limit: int = 2048) -> None:
        self.limit = limit
        self.grain = 1
        self.buckets: list[list[Any]] = []
        """[previous user, first user, last user, projects]"""

    def add(self, user: str, projects: int) -> None:
        last = self.buckets[-1] if self.buckets else None
        if last is not None and (last[3] < self.grain or last[2] == user):
            last[2], last[3] = user, last[3] + projects
            return
        self.buckets.append([last[2] if last else None, user, user, projects])
        if len(self.buckets) > self.limit:
            self._coarsen()

    def _coarsen(self) -> None:
        self.grain *= 2
        merged: list[list[Any]] = []
        for bucket in self.buckets:
            if merged and merged[-1][3] < self.grain:
                merged[-1][2], merged[-1][3] = bucket[2], merged[-1][3] + bucket[3]
            else:
                merged.append(bucket)
        self.buckets = merged

    def extend(self, other: WorkProfile) -> None:
        """Append a profile of users all above this one's (the next range's)."""
        for _, first, last, projects in other.buckets:
            if self.buckets and self.buckets[-1][2] >= first:
                raise ValueError("profiles must be appended in userId order")
            previous = self.buckets[-1][2] if self.buckets else None
            self.buckets.append([previous, first, last, projects])
            if len(self.buckets) > self.limit:
                self._coarsen()

    @property
    def total(self) -> int:
        return sum(bucket[3] for bucket in self.buckets)

    def rows(self) -> list[tuple[str, str, int]]:
        """The buckets as (first user, last user, projects): all `extend` needs of them."""
        return [(first, last, projects) for _, first, last, projects in self.buckets]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkProfile) and self.rows() == other.rows()

    __hash__ = None  # type: ignore[assignment]

    def encode(self, max_bytes: int = PROFILE_BYTES) -> bytes:
        """The compact form a range's result document carries (compressed JSON rows). Bounded
        by the bucket limit whatever the number of users; a profile that still takes more than
        `max_bytes` (very long userIds) is sent coarser, a copy coarsened until it fits."""
        coarser = WorkProfile(self.limit)
        coarser.grain, coarser.buckets = self.grain, [list(bucket) for bucket in self.buckets]
        while True:
            packed = zlib.compress(json.dumps(coarser.rows(), ensure_ascii=False,
                                              separators=(",", ":")).encode(), 6)
            if len(packed) <= max_bytes or len(coarser.buckets) <= 1:
                return packed
            coarser._coarsen()

    @classmethod
    def decode(cls, packed: bytes) -> WorkProfile:
        """What `encode` made; ValueError (one line) for anything else."""
        try:
            rows = json.loads(zlib.decompress(packed))
        except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"work profile unreadable: {exc}") from None
        profile = cls()
        if not isinstance(rows, list):
            raise ValueError("work profile is not a list of buckets")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                    and isinstance(row[1], str) and isinstance(row[2], int)
                    and not isinstance(row[2], bool) and row[2] >= 0 and row[0] <= row[1]):
                raise ValueError(f"work profile bucket {row!r} is not [first, last, projects]")
            if profile.buckets and profile.buckets[-1][2] >= row[0]:
                raise ValueError("work profile buckets are not in userId order")
            previous = profile.buckets[-1][2] if profile.buckets else None
            profile.buckets.append([previous, row[0], row[1], row[2]])
        return profile

    def cuts(self) -> Iterable[tuple[str, int]]:
        """Each place a split point can go, with the projects below it."""
        below = 0
        for previous, first, _, projects in self.buckets:
            if previous is not None:
                point = split_between(previous, first)
                if point is not None:
                    yield point, below
            below += projects


def merged_splits(profiles: Iterable[WorkProfile], count: int) -> list[str]:
    """`weighted_splits` over the profiles of consecutive ranges, in key order: the same
    points whether the ranges were swept in one process or spread over workers."""
    merged = WorkProfile()
    for profile in profiles:
        merged.extend(profile)
    return weighted_splits(merged, count)


def weighted_splits(profile: WorkProfile, count: int) -> list[str]:
    """Up to `count - 1` split points so that each range holds about as many projects; fewer
    when users are too few or too large to be cut finer (a user is never split)."""
    check_count(count)
    total = profile.total
    if count == 1 or total == 0:
        return []
    points: list[str] = []
    k = 1
    for point, below in profile.cuts():
        if k >= count:
            break
        if below >= k * total / count:
            points.append(point)
            while k < count and below >= k * total / count:
                k += 1
    return points


def plan_ranges(count: int, splits: Sequence[str] | None = None) -> list[KeyRange]:
    """At most `count` ranges: at the given split points (the last sweep's, weighted by its
    counts for this `count`) when they are usable, else spread evenly over the alphabet."""
    check_count(count)
    if count == 1:
        return [KeyRange()]
    if splits and len(splits) < count and all(map(is_split_point, splits)):
        try:
            return ranges_from_splits(splits)
        except ValueError:
            pass
    return ranges_from_splits(even_splits(count))


MAX_PARALLEL = defaults.SWEEP_PARALLEL_MAX


@dataclass(frozen=True)
class SweepPlan:
    """How a sweep cuts the keyspace: `ranges` ranges (at `splits`, the last sweep's, when
    usable), `parallel` of them read at once, each with one stream per store.

    `share`, when set, is what this sweep reads instead: a worker's part of a round spread
    over replicas. A share leaves the round's bookkeeping (the gauges, the count of projects
    and the pass over projects without a usable userId) to the round's coordinator, unless
    `remainder` asks for that pass (a share of no ranges and `remainder`: that pass alone)."""

    ranges: int = 1
    parallel: int = 1
    splits: tuple[str, ...] = ()
    share: tuple[KeyRange, ...] | None = None
    remainder: bool = True

    def __post_init__(self) -> None:
        check_count(self.ranges)
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise ValueError(f"parallel must be between 1 and {MAX_PARALLEL}, "
                             f"not {self.parallel}")

    def key_ranges(self) -> list[KeyRange]:
        if self.share is not None:
            return list(self.share)
        return plan_ranges(self.ranges, self.splits)

    @classmethod
    def of_share(cls, ranges: Sequence[KeyRange], parallel: int = 1,
                 remainder: bool = False) -> SweepPlan:
        """A worker's share of a round: exactly `ranges`, nothing else unless `remainder`."""
        return cls(max(1, len(ranges)), parallel, share=tuple(ranges), remainder=remainder)
