"""``modeldeploy operator``: kopf, with our settings, our handlers and nothing global."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import kopf

from modeldeploy.controller import metrics
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.handlers import State, register
from modeldeploy.controller.kube import Kube, load_client


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: list[str] | None = None,
    liveness_port: int | None = 8080,
    metrics_port: int | None = None,
    peering: str | None = None,
    priority: int | None = None,
    kubeconfig: Path | None = None,
    verbose: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM.

    ``namespaces`` scopes the operator (it then needs only namespaced permissions); without it
    the operator watches the whole cluster. ``peering`` names a KopfPeering object so that only
    one of several replicas is active (the one with the highest ``priority``, random unless
    given); without it the operator runs standalone (one replica).
    """
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    register(registry, config)
    state = State(config, Kube(load_client(str(kubeconfig) if kubeconfig else None)), namespaces)
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    if metrics_port:
        metrics.serve(metrics_port)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    try:
        kopf.run(
            registry=registry,
            memo=kopf.Memo(state=state),
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            liveness_endpoint=(
                f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
            ),
            standalone=peering is None,
            peering_name=peering,
            # Peers of equal priority all pause (kopf's rule), so each replica draws its own.
            priority=priority if priority is not None else secrets.randbelow(1_000_000) + 1,
        )
    finally:
        state.kube.close()
