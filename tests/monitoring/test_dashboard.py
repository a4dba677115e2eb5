"""The chart's Grafana dashboard against a real Prometheus scraping a real reconciler.

The engine, work queue, Firestore listeners and their watchdog run for real against the
emulators in this process (what ReconcilerRuntime runs, without Kopf), and
prometheus_client serves the default registry. Debian's Prometheus scrapes it every second
while a scenario produces drift, corrections, restored clips, a stale job, an error, a forced
listener restart, a refused login, a project held for flapping (another writer undoing our
corrections) and a foreign heartbeat (another process beating under our name); then every
panel query of dashboard.json must return data.

Set REEL_DASHBOARD_PNG=charts/reel-reconciler/dashboard.png to also draw the panels
(needs matplotlib).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from devkit.app import ReelApp
from devkit.emulators import Emulator, Emulators, fake_gcs_server, free_port
from devkit.notifications import Notifications
from devkit.seed import World, now
from reel_reconciler.api.app import start_api
from reel_reconciler.api.settings import ApiSettings
from reel_reconciler.engine import Engine, SweepResult, Trigger, cleanup_stale_jobs, sweep
from reel_reconciler.engine.listener import ListenerSet, safe_beat
from reel_reconciler.metrics import (
    FLAPPING_HOLDS_TOTAL,
    HEARTBEAT_CONFLICTS_TOTAL,
    NOTIFICATIONS_TOTAL,
)
from reel_reconciler.model import Action, DriftKind, ReconcilerId
from reel_reconciler.runtime import ReconcilerRuntime
from reel_reconciler.spec import ReconcilerSpec
from tests.monitoring.promserver import (
    MissingPrometheus,
    PrometheusServer,
    binary,
    running_prometheus,
    scrape_config,
)
from tests.monitoring.render_dashboard import (
    REPO,
    Panel,
    duration,
    load_dashboard,
    panels,
    render,
    substitute,
)
from tests.monitoring.test_alerts import ALERTS
from tests.support.patience import bound, wait_for

T = TypeVar("T")

RULES = REPO / "charts/reel-reconciler/files/alerts.yaml"
RATE_INTERVAL = "15s"
BURST = 10
"""Projects created at once in each phase: the listener enqueues them together, so the
rate-limited queue has a visible depth for a few scrapes."""


# --- static checks of dashboard.json ----------------------------------------------------

def test_dashboard_is_a_grafana_dashboard_with_the_two_variables() -> None:
    dashboard = load_dashboard()
    assert 38 <= dashboard["schemaVersion"] <= 40
    assert dashboard["uid"] == "reel-reconciler"
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    reconciler = variables["reconciler"]
    assert reconciler["type"] == "query"
    assert reconciler["datasource"]["uid"] == "${datasource}"
    assert reconciler["definition"] == "label_values(reel_reconciler_reconcile_total, reconciler)"
    assert reconciler["query"]["query"] == reconciler["definition"]
    assert reconciler["includeAll"]
    assert reconciler["allValue"] == ".*"


def test_every_panel_uses_the_datasource_variable_and_a_free_grid_cell() -> None:
    dashboard = load_dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        taken = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not taken & cells, f"panel {panel['title']!r} overlaps another"
        cells |= taken
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def documented_metrics() -> set[str]:
    """The metric names docs/design.md (Metrics) lists, without the prefix: its backticked
    names (labels in braces dropped) up to the list of drift kinds, asides in parentheses
    (label values) left out, and the prefix and the reconciler label of its first line."""
    text = (REPO / "docs/design.md").read_text()
    section = text.split("\n## 6. Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = re.sub(r"\([^)]*\)", "", section.split("`kind` is one of", 1)[0])
    return {token.split("{", 1)[0] for token in re.findall(r"`([^`]+)`", listed)} - {
        "reel_reconciler_", "reconciler"}


def defined_metrics() -> dict[str, bool]:
    """Every metric reel_reconciler/metrics.py defines (its name as exposed): whether it is
    per reconciler. One without a `reconciler` label exposes an unlabelled sample at once
    (a labelled one has no sample before its first child, and then only labelled ones)."""
    from reel_reconciler import metrics

    found = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            [family] = value.describe()
            labels = [sample.labels for family in value.collect() for sample in family.samples]
            # prometheus_client names a counter without its exposed `_total`
            name = f"{family.name}_total" if family.type == "counter" else family.name
            found[name] = all("reconciler" in sample for sample in labels)
    return found


def test_dashboard_covers_every_metric() -> None:
    """Each metric of docs/design.md (Metrics) appears in some panel, but those of the
    operator as a whole (no reconciler label: the dashboard filters every query by
    reconciler; the ReelReconcilerNotRunning alert reads them)."""
    defined = defined_metrics()
    assert {name.removeprefix("reel_reconciler_") for name in defined} == documented_metrics()
    operator_level = {name for name, per_reconciler in defined.items() if not per_reconciler}
    assert operator_level, "design.md names operator-level metrics: the probe finds none"
    exprs = " ".join(t.expr for p in panels(load_dashboard()) for t in p.targets)
    for name in set(defined) - operator_level:
        assert re.search(rf"\b{name}(_bucket|_sum|_count)?\{{", exprs), name
    for name in operator_level:
        assert not re.search(rf"\b{name}\b", exprs), f"{name} cannot be filtered by reconciler"


def test_drift_panel_names_every_drift_kind() -> None:
    """A reader of the drift panel learns what each series means, new kinds included."""
    [panel] = [p for p in load_dashboard()["panels"] if p.get("title") == "Drift detected by kind"]
    missing = [kind.value for kind in DriftKind if kind.value not in panel["description"]]
    assert missing == [], f"the drift panel's description omits {missing}"


def test_every_selector_filters_by_reconciler() -> None:
    for panel in panels(load_dashboard()):
        for target in panel.targets:
            selectors = re.findall(r"reel_reconciler_\w+(\{[^}]*\})?", target.expr)
            assert selectors, f"{panel.title}: no reel_reconciler_ metric in {target.expr}"
            for labels in selectors:
                assert 'reconciler=~"$reconciler"' in labels, (
                    f"{panel.title}: selector without reconciler=~\"$reconciler\" in "
                    f"{target.expr}")


def test_substitute_replaces_every_variable() -> None:
    expr = ('sum(rate(x{reconciler=~"$reconciler"}[$__rate_interval])) + '
            'increase(y{reconciler=~"${reconciler}"}[$__range]) + z[$__interval]')
    assert substitute(expr, reconciler="a.b", rate_interval="15s", interval="5s",
                      range_="10m") == ('sum(rate(x{reconciler=~"a.b"}[15s])) + '
                                        'increase(y{reconciler=~"a.b"}[10m]) + z[5s]')
    with pytest.raises(ValueError, match="unknown dashboard variable"):
        substitute("x[$__unknown]")


# --- a real reconciler, scraped by a real Prometheus ------------------------------------

class LiveReconciler:
    """A ReconcilerRuntime as the operator runs one, on an event loop of its own; its own
    watchdog ticks every 0.3 s, and this one can make it see an hour of heartbeat silence."""

    def __init__(self, runtime: ReconcilerRuntime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                             name="monitoring-loop")
        self._stop = threading.Event()
        self._force = threading.Event()
        self._forced: list[str | None] = []
        self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                          name="monitoring-watchdog")

    @property
    def engine(self) -> Engine:
        assert self.runtime.engine is not None
        return self.runtime.engine

    @property
    def listeners(self) -> ListenerSet:
        assert self.runtime.listeners is not None
        return self.runtime.listeners

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(bound(timeout))

    def start(self) -> None:
        self._loop_thread.start()
        self._call(self.runtime.start(), 30)
        self._watchdog.start()
        self.api_port = free_port()
        runtime = self.runtime
        self._api = self._call(start_api(ApiSettings(port=self.api_port, host="127.0.0.1"),
                                         None, lambda: {runtime.key: runtime}))

    def call_endpoint(self, project_id: str) -> int:
        """The reconcile endpoint without credentials: refused, and counted."""
        url = f"http://127.0.0.1:{self.api_port}/api/reel/projects/{project_id}/reconcile"
        return requests.post(url, timeout=bound(10)).status_code

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            if self._force.is_set():
                # the watchdog seeing an hour of heartbeat silence: restart with reason silence
                safe_beat(self.listeners)
                self._forced.append(self.listeners.check(now=time.time() + 3600))
                self._force.clear()

    def force_restart(self, timeout: float = 10) -> str | None:
        """Make the watchdog restart the listeners as if the heartbeat had gone silent."""
        count = len(self._forced)
        self._force.set()
        wait_for(lambda: len(self._forced) > count, timeout, "forced listener restart")
        return self._forced[-1]

    def wait_healthy(self, timeout: float = 15) -> None:
        wait_for(lambda: self.listeners.healthy, timeout, "healthy listeners")

    def distributed_round(self, timeout: float = 60) -> SweepResult:
        """A sweep round through the work topic, swept by this runtime's own worker."""
        return self._call(self.runtime.sweep(Trigger.SWEEP), timeout)

    def wait_idle(self, timeout: float = 20) -> None:
        assert self.runtime.queue is not None
        self._call(asyncio.wait_for(self.runtime.queue.wait_idle(), bound(timeout)), timeout + 1)

    def stop(self) -> None:
        self._stop.set()
        self._watchdog.join(10)
        if self._loop_thread.is_alive():
            self._call(self._api.cleanup())
            self._call(self.runtime.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(10)
        self.loop.close()


def seed_phase(world: World, tag: str) -> list[str]:
    """Drift of every kind, one stale job, healthy projects; returns the burst's ids."""
    user = "user-1"
    world.generated_project(f"missing-{tag}", status="ready", prompts=4, in_gcs=[0, 1],
                            in_db=4)
    world.generated_project(f"stitched-{tag}", status="ready", prompts=2, in_gcs=2, in_db=2,
                            stitchedFilename=world.stitched_path(user, f"stitched-{tag}"))
    world.generated_project(f"stale-{tag}", status="generating", prompts=3, in_gcs=3,
                            in_db=1, job_status="processing",
                            job_updated_ago=timedelta(hours=2))
    world.generated_project(f"healthy-{tag}", status="ready", prompts=2, in_gcs=2, in_db=2)
    world.add_project(f"invalid-{tag}", status="generating", promptList="not a list")
    # The burst: stuck in `generating`, clips in GCS the documents do not list (D1).
    # Clips and jobs first, then all project documents in one batch.
    burst = [f"burst-{tag}-{i:02d}" for i in range(BURST)]
    batch = world.db.batch()
    for project_id in burst:
        job = world.add_job(project_id, prompt_count=2)
        for index in range(2):
            world.put_object(world.clip_path(user, project_id, job, index))
        created = now() - timedelta(hours=1)
        batch.set(world.projects().document(project_id), {
            "userId": user, "userEmail": f"{user}@example.com", "title": project_id,
            "orientation": "portrait", "durationSeconds": 8, "compression": "optimized",
            "model": "veo-3.0-fast-generate-001", "audioEnabled": False,
            "promptList": ["a", "b"], "clipFilenames": [None, None], "status": "generating",
            "createdAt": created, "updatedAt": created})
    batch.commit()
    return burst


UNDONE = {"status": "generating", "clipFilenames": []}
"""What the other writer of the flapping project puts back after each of our corrections."""


def flapping_war(world: World, live: LiveReconciler, tag: str) -> None:
    """Another writer (an old deployment of the app) puts a project back, blind, after each
    of our corrections: after `spec.flapping.corrections` of them the reconciler holds it
    instead of correcting it again, and counts the hold."""
    project_id = f"flap-{tag}"
    label = live.engine.reconciler.label
    holds = counted(FLAPPING_HOLDS_TOTAL, label)
    app = ReelApp(world)
    world.generated_project(project_id, status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    for n in range(1, live.runtime.spec.flapping.corrections + 1):
        wait_for(lambda: world.project(project_id)["status"] == "ready", 30,
                 f"correction {n} of {project_id}")
        app.update_project(project_id, UNDONE)
    wait_for(lambda: counted(FLAPPING_HOLDS_TOTAL, label) > holds, 30,
             f"{project_id} to be held for flapping")
    assert world.project(project_id)["status"] == "generating", "held, not fought"


def foreign_heartbeat(world: World, live: LiveReconciler) -> None:
    """Another process beats once under this reconciler's name: our next beat finds that
    write since our own, and counts a conflict."""
    label = live.engine.reconciler.label
    conflicts = counted(HEARTBEAT_CONFLICTS_TOTAL, label)
    collection = live.runtime.spec.listeners.heartbeat_collection
    world.db.collection(collection).document(label).set({"reconciler": label, "beat": 0})
    wait_for(lambda: counted(HEARTBEAT_CONFLICTS_TOTAL, label) > conflicts, 10,
             "our next heartbeat to find the foreign beat")


def run_phase(world: World, live: LiveReconciler, tag: str, other: Any) -> None:
    """Listener-driven corrections, an observe sweep, stale jobs, an enforce sweep, an error,
    a listener restart, a refused login, notifications about another bucket and a project
    held for flapping: each metric of docs/design.md (Metrics) moves."""
    engine = live.engine
    notified = counted(NOTIFICATIONS_TOTAL, engine.reconciler.label)
    other.blob(f"elsewhere-{tag}.bin").upload_from_string(b"not ours")
    burst = seed_phase(world, tag)
    wait_for(lambda: all(world.project(pid)["status"] == "ready" for pid in burst), 30,
             f"the listener to correct the burst of phase {tag}")
    live.wait_idle()
    observed = sweep(engine, dry_run=True)
    assert observed.actions[Action.DRIFT] >= 2, observed.as_json()
    stale = cleanup_stale_jobs(engine)
    assert len(stale.stale_jobs) == 1, stale.as_json()
    assert stale.error is None, stale.as_json()
    enforced = sweep(engine)
    assert enforced.actions[Action.CORRECTED] >= 2, enforced.as_json()
    assert not enforced.aborted
    distributed = live.distributed_round()
    assert distributed.aborted is None, distributed.as_json()
    assert len(distributed.ranges) == 32
    missing = engine.reconcile(f"deleted-{tag}", Trigger.API)  # a forced reconcile of a
    assert missing.action is Action.ERROR                      # project deleted meanwhile
    assert live.force_restart() == "silence"
    live.wait_healthy()
    assert live.call_endpoint(f"deleted-{tag}") == 401
    # Delivered late on a loaded host, it would move the counter after the scrapes.
    wait_for(lambda: counted(NOTIFICATIONS_TOTAL, engine.reconciler.label) > notified, 30,
             f"the neighbour's notification of phase {tag}")
    # Last: the queue is idle again only once the hold has ended (its timer is waiting).
    flapping_war(world, live, tag)


def counted(counter: Counter, reconciler: str) -> float:
    """A counter of this process summed over its other labels, for one reconciler."""
    return sum(sample.value for family in counter.collect()
               for sample in family.samples
               if sample.name.endswith("_total") and sample.labels["reconciler"] == reconciler)


@pytest.fixture
def prometheus_installed() -> None:
    try:
        binary("prometheus")
    except MissingPrometheus as exc:
        pytest.fail(f"missing prerequisite: {exc}", pytrace=False)


@pytest.fixture
def metrics_endpoint() -> Iterator[str]:
    """prometheus_client's default registry over HTTP, as the operator's /metrics serves it."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def neighbour(pubsub: Emulator, emulators: Emulators, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Notifications, Any]]:
    """Another storage server whose changes reach the reconciler's subscription: its
    notifications are about a bucket not the reconciler's, counted and never acted on (the
    scenario's drift must wait for its sweeps)."""
    suffix = uuid.uuid4().hex[:8]
    notes = Notifications(pubsub, emulators.gcp_project, f"objects-{suffix}", f"reel-{suffix}")
    notes.create_topic()
    notes.create_subscription()
    workdir = tmp_path / "neighbour"
    workdir.mkdir()
    gcs = fake_gcs_server(workdir, events=(pubsub, notes.project, notes.topic))
    gcs.start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    client = storage.Client(project=emulators.gcp_project, credentials=anonymous,
                            client_options={"api_endpoint": f"http://{gcs.host}"})
    try:
        yield notes, client.create_bucket(f"neighbour-{suffix}")
    finally:
        gcs.stop()


@pytest.fixture
def live_reconciler(world: World, emulators: Emulators,
                    neighbour: tuple[Notifications, Any]) -> Iterator[LiveReconciler]:
    notes, _ = neighbour
    work = Notifications(notes.pubsub, notes.project, f"work-{notes.topic}",
                         f"work-{notes.subscription}")
    work.create_topic()
    work.create_subscription()
    spec = ReconcilerSpec.parse({
        "firestore": {"project": emulators.gcp_project,
                      "projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket, "rootPrefix": world.root_prefix,
                    "notifications": {"subscription": notes.path}},
        "settle": "0s", "concurrency": 2, "rateLimit": 2,
        # The phases fail their stale jobs themselves: the runtime's own timer, which runs at
        # the start, must not come round again in a slow run and fail them first.
        "staleJobs": {"interval": "1h"},
        # Ranges one at a time: the round's backlog stays up for a few scrapes.
        "sweep": {"ranges": 32, "parallel": 1, "distribution": {
            "topic": work.topic_path, "subscription": work.path}},
        "listeners": {"silenceThreshold": "20s", "heartbeatInterval": "300ms"},
        # Long enough for the undo after the last allowed correction to be held, short
        # enough that the hold's timer has gone by the next phase's wait for an idle queue.
        "flapping": {"hold": "6s"}})
    live = LiveReconciler(ReconcilerRuntime(
        ReconcilerId(f"dashboard-{uuid.uuid4().hex[:8]}", "monitoring"), spec))
    try:
        live.start()
        yield live
    finally:
        live.stop()


def has_nonzero(series: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) and float(v) != 0
               for s in series for _, v in s["values"])


def check_panels(prometheus: PrometheusServer, found: list[Panel], start: float,
                 end: float) -> list[str]:
    """Every target: non-empty at `end`, and some finite non-zero value over the scenario."""
    problems = []
    for panel in found:
        for target in panel.targets:
            expr = substitute(target.expr, reconciler=".*", rate_interval=RATE_INTERVAL,
                              interval="5s", range_=duration(end - start))
            instant = prometheus.query(expr, at=end)
            series = prometheus.query_range(expr, start, end, 1)
            if not instant:
                problems.append(f"{panel.title} [{target.ref_id}]: empty at the end: {expr}")
            elif not has_nonzero(series):
                problems.append(f"{panel.title} [{target.ref_id}]: only zeros/NaN: {expr}")
    return problems


@pytest.mark.usefixtures("prometheus_installed")
def test_every_panel_shows_data_from_a_real_reconciler(
        world: World, live_reconciler: LiveReconciler,
        neighbour: tuple[Notifications, Any], metrics_endpoint: str, tmp_path: Path) -> None:
    _, other = neighbour
    label = live_reconciler.engine.reconciler.label
    config = scrape_config(metrics_endpoint, keep_reconciler=label, rule_files=[RULES])
    with running_prometheus(tmp_path / "prometheus", config) as prometheus:
        prometheus.wait_for_samples('reel_reconciler_listener_up{listener="heartbeat"}')
        live_reconciler.wait_healthy()
        start = time.time() - 2
        # Phase a makes the series appear; phase b, scraped after, makes counters increase
        # where Prometheus can see it (a series born at 3 shows no rate).
        run_phase(world, live_reconciler, "a", other)
        foreign_heartbeat(world, live_reconciler)
        time.sleep(3)
        run_phase(world, live_reconciler, "b", other)
        time.sleep(4)
        end = time.time()
        found = panels(load_dashboard())
        assert len(found) >= 25
        problems = check_panels(prometheus, found, start, end)
        assert not problems, "panels without data:\n" + "\n".join(problems)

        # The alert rules load into a real Prometheus and evaluate without errors, and the
        # healthy scrape target does not make ReelReconcilerDown pending.
        groups = prometheus.api("rules")["groups"]
        evaluated = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(evaluated) == ALERTS
        for name, rule in evaluated.items():
            assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert evaluated["ReelReconcilerDown"]["state"] == "inactive"

        picture = os.environ.get("REEL_DASHBOARD_PNG")
        if picture:
            out = render(prometheus.url, REPO / picture, start, end, rate_interval="5s")
            assert out.stat().st_size > 10_000

