"""Distributed sweep rounds as the tests run them: a work topic and its shared subscription
on the Pub/Sub emulator, owners spread over the keyspace, and the JSON log lines of the
processes that coordinate and work the rounds."""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.emulators import Emulator, Emulators
from devkit.notifications import Notifications

LEASE = 10
"""Seconds: the test subscription's ack deadline, and the client library's first lease."""
PER_USER = 10
ALPHABET = string.digits + string.ascii_letters


@pytest.fixture(name="work")
def work_topic(emulators: Emulators, pubsub: Emulator,
         monkeypatch: pytest.MonkeyPatch) -> Notifications:
    """`work`: the work topic and its shared subscription, with a short ack deadline (import
    it into the test module)."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    name = f"work-{uuid.uuid4().hex[:8]}"
    created = Notifications(pubsub, emulators.gcp_project, name, name)
    created.create_topic()
    created.create_subscription(ack_deadline=LEASE)
    return created


def spread_user(index: int) -> str:
    """Owners spread over the alphabet as Firebase uids are, so that every range has work."""
    rng = random.Random(index // PER_USER)
    return "".join(rng.choice(ALPHABET) for _ in range(12))


def records(log: Path) -> Iterator[dict[str, Any]]:
    """The JSON log lines of a process (anything else it printed is skipped)."""
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record
