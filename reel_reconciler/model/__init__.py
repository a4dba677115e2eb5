"""Domain types: what the controller reads (`documents`), what it decides (`decision`), who
reconciles (`identity`) and why its watchdog restarts a listener (`watchdog`)."""

from reel_reconciler.model.decision import (
    Action,
    DriftKind,
    Observation,
    Plan,
    PolicySettings,
    Report,
    Trigger,
)
from reel_reconciler.model.documents import (
    ACTIVE_JOB_STATUSES,
    PROJECT_STATUSES,
    WRITTEN_FIELDS,
    InvalidDocument,
    InvalidJob,
    Job,
    LastCorrection,
    Location,
    ObjectInfo,
    Project,
    ProjectStatus,
    _JobFields,
    _ProjectFields,
    folder_user,
    timeout_message,
)
from reel_reconciler.model.identity import COMMAND_LINE, WATCH, ReconcilerId
from reel_reconciler.model.watchdog import FIRESTORE_RESTART_REASONS, RestartReason

__all__ = [
    "ACTIVE_JOB_STATUSES", "COMMAND_LINE", "FIRESTORE_RESTART_REASONS", "PROJECT_STATUSES", "WATCH",
    "WRITTEN_FIELDS", "Action", "DriftKind", "InvalidDocument", "InvalidJob", "Job",
    "LastCorrection", "Location", "ObjectInfo", "Observation", "Plan", "PolicySettings",
    "Project", "ProjectStatus", "ReconcilerId", "Report", "RestartReason", "Trigger",
    "_JobFields", "_ProjectFields", "folder_user", "timeout_message",
]
