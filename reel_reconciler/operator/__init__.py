"""The Kopf operator: handlers wire Kubernetes triggers to the engine; nothing here decides."""

GROUP, VERSION, PLURAL = "reelmaker.io", "v1", "reelreconcilers"
REQUESTED_AT = "reelmaker.io/reconcile-requested-at"
RECONCILE_PROJECTS = "reelmaker.io/reconcile-projects"
RESUME_WRITES = "reelmaker.io/resume-writes"
# Kopf's own finalizer (its default), named here so that the operator and
# `reel-reconciler delete-reconciler` agree on it.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
