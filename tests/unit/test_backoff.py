"""The one backoff rule: doubling from its base, capped."""

from reel_reconciler.backoff import backoff


def test_backoff_doubles_from_its_base_up_to_its_ceiling() -> None:
    assert [backoff(n, 2.0, 60.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_the_first_failure_waits_the_base() -> None:
    assert backoff(1, 0.5, 300.0) == backoff(0, 0.5, 300.0) == 0.5
