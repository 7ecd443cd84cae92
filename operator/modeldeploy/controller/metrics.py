"""The operator's own Prometheus metrics, on ``--metrics-port`` (the Helm chart's metrics Service
and optional ServiceMonitor scrape them).

What a platform team alerts on: reconciliations failing, rollouts rolled back, analysis runs
slowing down or failing. The model servers' traffic metrics are the runtime's, not these.
"""

from __future__ import annotations

from prometheus_client import start_http_server

from modeldeploy.api.metric_names import family

# Names, labels and help come from the catalogue (api/metric_names.py, docs/metrics.md).
RECONCILIATIONS = family("modeldeploy_operator_reconciliations").counter()
RECONCILE_SECONDS = family("modeldeploy_operator_reconcile_duration_seconds").histogram(
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
)
ROLLOUTS = family("modeldeploy_operator_rollouts").counter()
ANALYSES = family("modeldeploy_operator_analysis_runs").counter()
ANALYSIS_SECONDS = family("modeldeploy_operator_analysis_duration_seconds").histogram(
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
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
