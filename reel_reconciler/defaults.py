"""Every default, defined once: `Settings`, the CR spec, the CLI's help, `watch` and the engine
read them from here when they need them, not when they are imported, so that one change here
reaches all of them (the CRD repeats them for `kubectl explain`; a test holds the two together)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal

DATABASE = "(default)"
PROJECTS_COLLECTION = "reel_maker_projects"
JOBS_COLLECTION = "reel_maker_jobs"
ROOT_PREFIX = "reel-maker"

STALE_TIMEOUT = timedelta(minutes=30)
SETTLE = timedelta(seconds=30)
SWEEP_INTERVAL = timedelta(minutes=30)
STALE_INTERVAL = timedelta(minutes=5)
STALE_FULL_PASS_EVERY = timedelta(hours=6)
"""How often the stale-job timer queries every active job instead of trusting the jobs
listener's view: the bound on how long a job a wrong view hides can stay stuck."""
SWEEP_RANGES = 64
"""userId ranges a sweep cuts the keyspace into (1: one stream per store, as before ranges)."""
SWEEP_PARALLEL = 8
"""Ranges one reconciler sweeps at once, each with one GCS and one Firestore stream."""
SWEEP_FULL_EVERY = timedelta(hours=24)
"""How often a timed sweep passes every range in full; between, a round reads Firestore only
for users whose storage changed and for projects not at rest (docs/design.md, Delta rounds)."""
FINGERPRINT_COLLECTION = "reel_reconciler_fingerprints"
"""Where a delta round keeps each range's folder fingerprints, one document per range."""
SWEEP_RANGES_MAX = 4096
SWEEP_PARALLEL_MAX = 64
CONCURRENCY = 8
OPT_OUT_FIELD = "reconcilerOptOut"
"""A project document with this field set to true is observed and reported, never written."""
FLAP_CORRECTIONS = 2
"""Corrections of one project another writer may undo within the window; the next is held.
Two, as two honest corrections can follow each other (a worker healed around comes back and
fails); a third in a row is a fight."""
FLAP_WINDOW = timedelta(hours=1)
FLAP_HOLD = timedelta(hours=1)
"""How long a flapping project is left alone after its last correction: at least the stale
timeout, so that a war costs at most two writes per stale timeout."""
RATE_LIMIT = 500.0
MODE: Final[Literal["Enforce", "Observe"]] = "Enforce"

REQUEST_TIMEOUT = 10.0
"""Seconds per Firestore or GCS request."""
RETRY_DEADLINE = 15.0
"""Seconds a failing request is retried for."""
MAX_ATTEMPTS = 3
"""Attempts of one reconcile whose write lost a race with another writer."""
PAGE_SIZE = 300
"""Documents per Firestore query of a sweep's streams."""
GCS_PAGE_SIZE = 1000
"""Objects per GCS list page (the most GCS returns)."""

HEARTBEAT_INTERVAL = timedelta(seconds=5)
SILENCE_THRESHOLD = timedelta(seconds=30)
RESUBSCRIBE_INTERVAL = timedelta(minutes=30)
HEARTBEAT_COLLECTION = "reel_reconciler_heartbeats"

MAX_DESTRUCTIVE = 50
DESTRUCTIVE_WINDOW = timedelta(minutes=10)
"""The breaker: at most this many destructive corrections (a claimed clip emptied, a stitched
reel dropped, a `ready` project demoted) per window, per reconciler. Real deletions come a
few at a time (a user removing clips, a lifecycle rule on old objects); a wrong bucket or a
changed prefix makes every project look destructive at once."""
BREAKER_COLLECTION = "reel_reconciler_breakers"
ROUNDS_COLLECTION = "reel_reconciler_sweep_rounds"
"""One document per range of a distributed sweep round: its worker's result."""
ROUND_RESULTS_KEPT = timedelta(days=7)
"""How long a range's result document is kept (its `expireAt`, for a Firestore TTL policy)."""
ROUND_MIN_WAIT = timedelta(minutes=2)
"""A coordinator waits for its round's results one sweep interval, and never less than this."""

METRICS_PORT = 9102
HEALTH_PORT = 8080
DELETE_TIMEOUT = timedelta(seconds=60)
"""How long `delete-reconciler` waits for the operator before it removes the finalizer."""

API_RATE_LIMIT = "30/minute"
"""Reconcile requests per caller: a user opening projects one after another stays well
inside it; a script looping on the endpoint does not."""

# The Kubernetes API. A connection a network blip broke without a FIN or RST (a load balancer
# or NAT that forgot the flow) looks open and quiet to the client: every wait on it is bounded.
KUBE_REQUEST_TIMEOUT = timedelta(seconds=5)
"""Each call this product makes with the `kubernetes` client (status patches, TokenReview,
SubjectAccessReview): small requests the API server answers in milliseconds."""
KOPF_REQUEST_TIMEOUT = timedelta(seconds=15)
"""Kopf's own requests (patches, events, peering), which Kopf retries with backoff."""
KUBE_CONNECT_TIMEOUT = timedelta(seconds=5)
WATCH_SERVER_TIMEOUT = timedelta(seconds=60)
"""The API server ends each watch-stream after this long and Kopf resumes it where it was."""
WATCH_CLIENT_TIMEOUT = WATCH_SERVER_TIMEOUT + timedelta(seconds=5)
"""A stream the server did not end on time is dead: at most this long goes unseen."""
