"""Firestore listeners (change feeds) that only enqueue project ids, and the watchdog that
keeps them honest.

Errors alone prove nothing: measured on Google's emulator, a killed and restarted server
leaves the Python client reconnecting by itself with `is_active` still True, and in
production the client is known to stop silently. So the watchdog also writes a heartbeat
document and listens to it: silence past a threshold restarts the listeners.

A restart hands each feed's state to its successor (stores/feedstate.py): the new Listen
resumes from the old one's token, and its first snapshot queues only what changed meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Final, Literal

from google.api_core import exceptions as gexc

from reel_reconciler import defaults, metrics
from reel_reconciler.backoff import backoff
from reel_reconciler.model import ReconcilerId, RestartReason
from reel_reconciler.stores import StoreError
from reel_reconciler.stores.changefeed import Change, ChangeFeed, OnChanges
from reel_reconciler.stores.feedstate import FeedState, Seen
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.subscription import Subscription

log = logging.getLogger(__name__)

PROJECTS, JOBS, HEARTBEAT, NOTIFICATIONS = "projects", "jobs", "heartbeat", "notifications"
CONNECTING: Final = "connecting"
"""A subscription started and not yet proven: not pulling, though nothing failed."""
NOTIFICATIONS_GRACE = 3.0
"""Seconds a new pull must run without error to count as healthy: a missing subscription
fails it within one round trip."""

Enqueue = Callable[[list[str]], None]
OpenFeed = Callable[[OnChanges, FeedState | None], ChangeFeed]
"""A store method that makes a change feed (not started) calling back with its changes,
picking up after a stopped feed's state when given one."""


def _project_ids(changes: list[Change]) -> list[str]:
    """A project entering or changing inside the watched set (generating, stitching, error)."""
    return [change.id for change in changes if change.present]


def _job_project_ids(changes: list[Change]) -> list[str]:
    """A job leaving the active set (finished, failed, deleted) enqueues its project."""
    ids = []
    for change in changes:
        project_id = change.data.get("projectId")
        if not change.present and isinstance(project_id, str) and project_id:
            ids.append(project_id)
    return ids


class Listener:
    """One change feed. Its callback records liveness and hands ids to `enqueue`."""

    def __init__(self, name: str, open_feed: OpenFeed,
                 extract: Callable[[list[Change]], list[str]], enqueue: Enqueue,
                 reconciler: ReconcilerId) -> None:
        self.name = name
        self._open_feed = open_feed
        self._extract = extract
        self._enqueue = enqueue
        self._reconciler = reconciler.label
        self._feed: ChangeFeed | None = None
        self._failure: BaseException | None = None
        self._state: FeedState | None = None
        """The last feed's, for the next start to pick up after (None: start blank)."""
        self._first = True
        self.last_event = 0.0
        self.started_at = 0.0

    def start(self) -> None:
        self._failure = None
        self.started_at = time.time()
        state, self._state = self._state, None
        log.info("listener starting", extra={
            "reconciler": self._reconciler, "listener": self.name,
            "carried": 0 if state is None else len(state.members),
            "resumeToken": state is not None and state.resume_token is not None})
        feed = self._open_feed(self._callback, state)
        self._first = True
        self._feed = feed  # before it starts: its first callback reads what it skipped
        feed.start()

    def stop(self, keep: bool = True) -> None:
        """Close the feed; with `keep`, hold its state for the next start, unless our callback
        failed (ids may have been lost: the next feed then starts blank and queues them all)."""
        feed, self._feed = self._feed, None
        if feed is not None:
            try:
                feed.stop()
            except Exception as exc:  # a dead stream may fail to close; it is dropped anyway
                log.debug("stop failed", extra={"listener": self.name, "error": str(exc)})
            self._state = feed.state() if keep and self._failure is None else None

    @property
    def feed(self) -> ChangeFeed | None:
        """The open change feed, None while stopped."""
        return self._feed

    @property
    def closed(self) -> bool:
        feed = self._feed
        return feed is None or not feed.is_active

    @property
    def callback_failed(self) -> bool:
        """Our callback raised: ids may have been lost (a stream that ended is `closed`)."""
        return self._failure is not None

    @property
    def error(self) -> BaseException | None:
        """Our callback's failure, or the feed's (a broken protocol, a stream ended for good)."""
        feed = self._feed
        return self._failure or (feed.error if feed is not None else None)

    def _callback(self, changes: list[Change]) -> None:
        try:
            self.last_event = time.time()
            metrics.LISTENER_LAST_EVENT.labels(self._reconciler, self.name).set(self.last_event)
            ids = self._extract(changes)
            if ids:
                self._enqueue(ids)
            if self._first:
                self._first = False
                self._count_first_snapshot(len(ids))
        except Exception as exc:
            self._failure = exc
            log.exception("listener callback failed", extra={"listener": self.name})

    def _count_first_snapshot(self, queued: int) -> None:
        """What this (re)start cost: ids queued by its first snapshot, and members skipped as
        unchanged since the previous feed's last snapshot."""
        feed = self._feed
        skipped = feed.skipped if feed is not None else 0
        metrics.LISTENER_SNAPSHOT_TOTAL.labels(self._reconciler, self.name, "queued").inc(queued)
        metrics.LISTENER_SNAPSHOT_TOTAL.labels(self._reconciler, self.name, "skipped").inc(skipped)
        log.info("listener first snapshot", extra={"reconciler": self._reconciler,
                                                   "listener": self.name, "queued": queued,
                                                   "skipped": skipped})


@dataclass
class WatchdogSettings:
    heartbeat_interval: float = field(
        default_factory=lambda: defaults.HEARTBEAT_INTERVAL.total_seconds())
    silence_threshold: float = field(
        default_factory=lambda: defaults.SILENCE_THRESHOLD.total_seconds())
    resubscribe_every: float = field(
        default_factory=lambda: defaults.RESUBSCRIBE_INTERVAL.total_seconds())
    backoff_base: float = 2.0
    backoff_max: float = 60.0


class ListenerSet:
    """The projects and jobs listeners of one reconciler, plus its heartbeat and watchdog,
    and the storage notifications' subscription when there is one."""

    def __init__(self, store: FirestoreStore, enqueue: Enqueue, reconciler: ReconcilerId,
                 heartbeat_collection: str = defaults.HEARTBEAT_COLLECTION,
                 settings: WatchdogSettings | None = None,
                 notifications: Subscription | None = None) -> None:
        self.store = store
        self.reconciler = reconciler
        self._label = reconciler.label
        self.settings = settings or WatchdogSettings()
        self.heartbeat_collection = heartbeat_collection
        self.listeners = [
            Listener(PROJECTS, store.watch_projects, _project_ids, enqueue, reconciler),
            Listener(JOBS, store.watch_active_jobs, _job_project_ids, enqueue, reconciler),
            Listener(HEARTBEAT, partial(store.watch_heartbeat, heartbeat_collection, self._label),
                     lambda _: [], enqueue, reconciler),
        ]
        self._lock = threading.Lock()
        self._heartbeat_time: datetime | None = None
        self._beats = 0
        self._restarts = 0
        self._next_restart_at = 0.0
        self._firestore_up = False
        self.notifications = notifications
        self.notifications_problem: RestartReason | Literal["connecting"] | None = None
        """Why the subscription is not pulling (`subscription_missing`, `subscription_failed`,
        `connecting`), or None while it is."""
        self._notification_restarts = 0
        self._next_notification_restart = 0.0

    @property
    def healthy(self) -> bool:
        return self._firestore_up and self.notifications_problem is None

    @property
    def firestore_up(self) -> bool:
        return self._firestore_up

    def active_jobs(self, now: float | None = None) -> dict[str, Seen] | None:
        """The jobs feed's members (the active jobs, with the fields staleness is judged on)
        while they can be trusted: the watchdog found every listener up, none has failed,
        closed or gone silent since, and the feed has applied a consistent snapshot on its
        live stream (`ChangeFeed.view`). None otherwise: the caller queries."""
        now = time.time() if now is None else now
        if not self._firestore_up or self._restart_reason(now) not in (None,
                                                                      RestartReason.SCHEDULED):
            return None
        feed = next(listener.feed for listener in self.listeners if listener.name == JOBS)
        return None if feed is None else feed.view()

    def start(self) -> None:
        with self._lock:
            for listener in self.listeners:
                listener.start()
            if self.notifications is not None:
                self.notifications.start()
                self._notifications_up(CONNECTING)
        self._set_up(False)  # healthy once the heartbeat listener has heard something

    def stop(self) -> None:
        with self._lock:
            for listener in self.listeners:
                listener.stop(keep=False)
            if self.notifications is not None:
                self.notifications.stop()
        self._set_up(False)

    def beat(self) -> None:
        """Write the heartbeat document, guarded by the update time of our own last write
        (after another writer or a wiped database, by the time the store found instead)."""
        self._beats += 1
        self._heartbeat_time = self.store.beat(self.heartbeat_collection, self._label,
                                               self._beats, self._heartbeat_time)

    def check(self, now: float | None = None) -> RestartReason | None:
        """Restart the listeners when one is closed, failed, silent or due, and the
        subscription when it stopped pulling; returns the reason of a restart."""
        now = time.time() if now is None else now
        firestore = self._check_firestore(now)
        notifications = self._check_notifications(now)
        return firestore or notifications

    def _check_notifications(self, now: float) -> RestartReason | None:
        """A pull that has run a while without error is healthy; one that ended (a missing
        subscription ends it at once) is started again with its own backoff."""
        subscription = self.notifications
        if subscription is None:
            return None
        if not subscription.closed and subscription.error is None:
            if now - subscription.started_at >= NOTIFICATIONS_GRACE:
                self._notifications_up(None)
                self._notification_restarts = 0
            return None
        problem = (RestartReason.SUBSCRIPTION_MISSING
                   if isinstance(subscription.error, gexc.NotFound)
                   else RestartReason.SUBSCRIPTION_FAILED)
        self._notifications_up(problem)
        if now < self._next_notification_restart:
            return None
        self._notification_restarts += 1
        delay = backoff(self._notification_restarts, self.settings.backoff_base,
                        self.settings.backoff_max)
        self._next_notification_restart = now + delay
        log.warning("restarting the notification subscription", extra={
            "reconciler": self._label, "subscription": subscription.path,
            "reason": problem, "error": str(subscription.error), "backoffSeconds": delay})
        metrics.LISTENER_RESTARTS_TOTAL.labels(self._label, NOTIFICATIONS,
                                               problem.value).inc()
        with self._lock:
            subscription.stop()
            subscription.start()
        return problem

    def _notifications_up(self, problem: RestartReason | Literal["connecting"] | None) -> None:
        self.notifications_problem = problem
        metrics.LISTENER_UP.labels(self._label, NOTIFICATIONS).set(0 if problem else 1)

    def _check_firestore(self, now: float) -> RestartReason | None:
        reason = self._restart_reason(now)
        if reason is None:
            if not self._firestore_up and self._heard_heartbeat_since_start():
                self._set_up(True)
                self._restarts = 0
            return None
        self._set_up(False)
        if now < self._next_restart_at:
            return None
        self._restarts += 1
        delay = backoff(self._restarts, self.settings.backoff_base, self.settings.backoff_max)
        self._next_restart_at = now + delay
        log.warning("restarting listeners", extra={"reconciler": self._label,
                                                   "reason": reason, "backoffSeconds": delay})
        for listener in self.listeners:
            metrics.LISTENER_RESTARTS_TOTAL.labels(self._label, listener.name,
                                                   reason.value).inc()
        with self._lock:
            for listener in self.listeners:
                listener.stop()
            for listener in self.listeners:
                listener.start()
        return reason

    def _restart_reason(self, now: float) -> RestartReason | None:
        for listener in self.listeners:
            if listener.callback_failed:
                return RestartReason.CALLBACK_ERROR
            if listener.closed:
                return RestartReason.CLOSED
        heartbeat = self.listeners[2]
        since = max(heartbeat.last_event, heartbeat.started_at)
        if now - since > self.settings.silence_threshold:
            return RestartReason.SILENCE
        if now - heartbeat.started_at > self.settings.resubscribe_every:
            return RestartReason.SCHEDULED
        return None

    def _heard_heartbeat_since_start(self) -> bool:
        heartbeat = self.listeners[2]
        return heartbeat.last_event >= heartbeat.started_at

    def _set_up(self, up: bool) -> None:
        self._firestore_up = up
        for listener in self.listeners:
            metrics.LISTENER_UP.labels(self._label, listener.name).set(1 if up else 0)


def safe_beat(listeners: ListenerSet) -> str | None:
    """One heartbeat; a failure is reported (the watchdog acts on the silence), not raised."""
    try:
        listeners.beat()
    except StoreError as exc:
        return str(exc)
    return None
