"""The ReelReconciler spec: what a platform team writes in the CR (and `watch` builds from its
flags), validated once per change, every error naming the spec path."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reel_reconciler import defaults
from reel_reconciler.config import (
    ConfigError,
    Duration,
    OptOutField,
    Settings,
    Window,
    load_settings,
    problem_of,
    value_of,
)
from reel_reconciler.usage import invalid


class _SpecPart(BaseModel):
    """Defaults are read from `reel_reconciler.defaults` when a spec is parsed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FirestoreSpec(_SpecPart):
    project: str | None = None
    database: str = Field(default_factory=lambda: defaults.DATABASE)
    projects_collection: str = Field(default_factory=lambda: defaults.PROJECTS_COLLECTION,
                                     alias="projectsCollection", min_length=1)
    jobs_collection: str = Field(default_factory=lambda: defaults.JOBS_COLLECTION,
                                 alias="jobsCollection", min_length=1)


SUBSCRIPTION_PATTERN = r"^projects/[^/]+/subscriptions/[^/]+$"
SUBSCRIPTION_ENV = "REEL_NOTIFICATIONS_SUBSCRIPTION"


class NotificationsSpec(_SpecPart):
    subscription: str = Field(pattern=SUBSCRIPTION_PATTERN)
    """The Pub/Sub subscription on the bucket's notification topic."""


class StorageSpec(_SpecPart):
    bucket: str = Field(min_length=3, max_length=222)
    root_prefix: str = Field(default_factory=lambda: defaults.ROOT_PREFIX, alias="rootPrefix",
                             min_length=1)
    notifications: NotificationsSpec | None = None
    """GCS object notifications; None: storage changes are found by sweeps only."""


TOPIC_PATTERN = r"^projects/[^/]+/topics/[^/]+$"
WORK_TOPIC_ENV = "REEL_WORK_TOPIC"
WORK_SUBSCRIPTION_ENV = "REEL_WORK_SUBSCRIPTION"


class DistributionSpec(_SpecPart):
    """Sweep rounds spread over replicas through Pub/Sub (docs/design.md, Distributed
    rounds): the coordinator publishes each range to `topic`; every replica pulls
    `subscription` (a subscription on that topic) and sweeps what it gets."""

    topic: str = Field(pattern=TOPIC_PATTERN)
    subscription: str = Field(pattern=SUBSCRIPTION_PATTERN)


class SweepSpec(_SpecPart):
    interval: Duration = Field(default_factory=lambda: defaults.SWEEP_INTERVAL)
    ranges: int = Field(default_factory=lambda: defaults.SWEEP_RANGES, ge=1,
                        le=defaults.SWEEP_RANGES_MAX)
    """userId ranges a sweep cuts the keyspace into (docs/design.md, Key ranges)."""
    parallel: int = Field(default_factory=lambda: defaults.SWEEP_PARALLEL, ge=1,
                          le=defaults.SWEEP_PARALLEL_MAX)
    """Ranges swept at once by one reconciler."""
    distribution: DistributionSpec | None = None
    """None: one replica sweeps every range itself."""
    full_every: Duration = Field(default_factory=lambda: defaults.SWEEP_FULL_EVERY,
                                 alias="fullEvery")
    """How often a timed sweep passes each range in full; between, its rounds are delta rounds
    (docs/design.md, Delta rounds). At most the interval: every round is a full one."""


class StaleJobsSpec(_SpecPart):
    interval: Duration = Field(default_factory=lambda: defaults.STALE_INTERVAL)
    timeout: Duration = Field(default_factory=lambda: defaults.STALE_TIMEOUT)


class SafetySpec(_SpecPart):
    """The breaker on destructive corrections (docs/design.md, The breaker)."""

    max_destructive: int = Field(default_factory=lambda: defaults.MAX_DESTRUCTIVE, ge=0,
                                 le=100_000, alias="maxDestructive")
    window: Duration = Field(default_factory=lambda: defaults.DESTRUCTIVE_WINDOW)
class FlappingSpec(_SpecPart):
    """When a project whose corrections another writer keeps undoing is held."""

    corrections: int = Field(default_factory=lambda: defaults.FLAP_CORRECTIONS, ge=1, le=100)
    window: Duration = Field(default_factory=lambda: defaults.FLAP_WINDOW)
    hold: Duration = Field(default_factory=lambda: defaults.FLAP_HOLD)


class ListenersSpec(_SpecPart):
    """Watchdog timing; the defaults suit production, tests shorten them."""

    heartbeat_interval: Duration = Field(default_factory=lambda: defaults.HEARTBEAT_INTERVAL,
                                         alias="heartbeatInterval")
    silence_threshold: Duration = Field(default_factory=lambda: defaults.SILENCE_THRESHOLD,
                                        alias="silenceThreshold")
    resubscribe_interval: Duration = Field(default_factory=lambda: defaults.RESUBSCRIBE_INTERVAL,
                                           alias="resubscribeInterval")
    heartbeat_collection: str = Field(default_factory=lambda: defaults.HEARTBEAT_COLLECTION,
                                      alias="heartbeatCollection", min_length=1)


class ReconcilerSpec(_SpecPart):
    """The spec of a ReelReconciler (docs/design.md, Kubernetes surface), validated once per
    change."""

    firestore: FirestoreSpec = Field(default_factory=FirestoreSpec)
    storage: StorageSpec
    mode: Literal["Enforce", "Observe"] = Field(default_factory=lambda: defaults.MODE)
    suspend: bool = False
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    stale_jobs: StaleJobsSpec = Field(default_factory=StaleJobsSpec, alias="staleJobs")
    settle: Window = Field(default_factory=lambda: defaults.SETTLE)
    stitch_timeout: Duration | None = Field(default=None, alias="stitchTimeout")
    """How long a `stitching` project is its stitcher's; unset: the stale-job timeout."""
    concurrency: int = Field(default_factory=lambda: defaults.CONCURRENCY, ge=1, le=256)
    rate_limit: float = Field(default_factory=lambda: defaults.RATE_LIMIT, gt=0, le=10_000,
                              alias="rateLimit")
    """Listener-triggered reconciles started per second, at most: a burst of events must not
    turn into a burst of Firestore reads and writes. The default is the rate Firestore's
    ramp-up guidance (500/50/5) lets new traffic start at; bursts are read in batches."""
    listeners: ListenersSpec = Field(default_factory=ListenersSpec)
    safety: SafetySpec = Field(default_factory=SafetySpec)
    opt_out_field: OptOutField = Field(default_factory=lambda: defaults.OPT_OUT_FIELD,
                                       alias="optOutField")
    """A project whose document has this field set to true is observed, never written."""
    flapping: FlappingSpec = Field(default_factory=FlappingSpec)

    @classmethod
    def parse(cls, spec: Any) -> ReconcilerSpec:
        try:
            return cls.model_validate(dict(spec or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(["spec", *(str(p) for p in err["loc"])])
            raise ConfigError(invalid(where, problem_of(err), value_of(err))) from exc

    @property
    def observe(self) -> bool:
        return self.mode == "Observe"

    def settings(self) -> Settings:
        """Engine settings; the environment still supplies timeouts and page sizes."""
        return load_settings(
            gcp_project=self.firestore.project, database=self.firestore.database,
            bucket=self.storage.bucket, root_prefix=self.storage.root_prefix,
            projects_collection=self.firestore.projects_collection,
            jobs_collection=self.firestore.jobs_collection,
            stale_timeout=self.stale_jobs.timeout, settle=self.settle,
            stitch_timeout=self.stitch_timeout, concurrency=self.concurrency,
            max_destructive=self.safety.max_destructive,
            destructive_window=self.safety.window,
            opt_out_field=self.opt_out_field, flap_corrections=self.flapping.corrections,
            flap_window=self.flapping.window, flap_hold=self.flapping.hold)
