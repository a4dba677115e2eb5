"""The sweep: every project once, its stores read as streams and merged a user at a time.

`order` and `cursor` hold the merge (Firestore's userId order against GCS's name order),
`prefetch` the streams read ahead, `result` what a sweep found, `run` the orchestration.
"""

from reel_reconciler.engine.sweep.result import SweepResult
from reel_reconciler.engine.sweep.run import JOB_FIELDS, PROJECT_FIELDS, sweep

__all__ = ["JOB_FIELDS", "PROJECT_FIELDS", "SweepResult", "sweep"]
