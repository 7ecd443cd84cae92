"""The operator's own Prometheus metrics, on ``--metrics-port`` (the Helm chart's metrics Service
and optional ServiceMonitor scrape them).

What a platform team alerts on: reconciliations failing, rollouts rolled back, analysis runs
slowing down or failing. The model servers' traffic metrics are the runtime's, not these.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILIATIONS = Counter(
    "modeldeploy_operator_reconciliations",
    "Reconciliations of a ModelDeployment, by result (ok, transient_error, permanent_error).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_operator_reconcile_duration_seconds",
    "Time one reconciliation took, analysis included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROLLOUTS = Counter(
    "modeldeploy_operator_rollouts",
    "Rollouts that ended, by outcome (Promoted, RolledBack, Aborted, Failed).",
    ["outcome"],
)
ANALYSES = Counter(
    "modeldeploy_operator_analysis_runs", "Canary analysis runs, by verdict.", ["passed"]
)
ANALYSIS_SECONDS = Histogram(
    "modeldeploy_operator_analysis_duration_seconds",
    "Time one analysis run took (golden requests and Prometheus queries).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

ENDINGS = {
    "RolloutPromoted": "Promoted",
    "RolloutRolledBack": "RolledBack",
    "RolloutAborted": "Aborted",
    "RolloutFailed": "Failed",
}
"""Event reasons that end a rollout → the outcome label."""


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` in a background thread."""
    start_http_server(port)
