"""The default peering priority: drawn from a range where ties are negligible, never equal
to a live peer's (Kopf pauses every replica that ties, and then none runs)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from reel_reconciler.operator.peering import HIGHEST, draw, live_priorities

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def peer(priority: object, seen_ago: float, lifetime: float = 30) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_only_live_peers_hold_a_priority() -> None:
    status = {"a@1": peer(7, 10), "b@2": peer(9, 31), "c@3": peer(11, 5, lifetime=0),
              "d@4": {"priority": "x"}, "e@5": "not a peer"}
    assert live_priorities(status, NOW) == {7}


def test_kopfs_naive_timestamps_count_as_utc() -> None:
    status = {"a@1": {"priority": 3, "lifetime": 60,
                      "lastseen": (NOW - timedelta(seconds=5)).replace(tzinfo=None).isoformat()}}
    assert live_priorities(status, NOW) == {3}


class Replay(random.Random):
    """Returns the given numbers in turn: a draw that first lands on a taken priority."""

    def __init__(self, *numbers: int) -> None:
        super().__init__()
        self.numbers = list(numbers)

    def randint(self, a: int, b: int) -> int:
        assert (a, b) == (1, HIGHEST)
        return self.numbers.pop(0)


def test_a_draw_never_takes_a_live_peers_priority() -> None:
    assert draw({5, 6}, Replay(5, 6, 5, 42)) == 42


def test_draws_spread_over_the_whole_range() -> None:
    drawn = {draw(set()) for _ in range(1000)}
    assert len(drawn) == 1000
    assert max(drawn) > HIGHEST // 2 > min(drawn) >= 1
