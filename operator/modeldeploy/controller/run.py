"""``modeldeploy operator``: kopf, with our settings, our handlers and nothing global."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import secrets
import socket
from pathlib import Path

import kopf

from modeldeploy.controller import kserve_features, metrics
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.engine import State
from modeldeploy.controller.handlers import register
from modeldeploy.controller.kube import Kube, load_client
from modeldeploy.controller.leader import LeaderElection, Timing
from modeldeploy.controller.watch_decoding import use_orjson_for_watches

GC_THRESHOLD = (5000, 10, 10)
"""The cyclic collector's thresholds: a young collection per 5 000 allocations, not 700. kopf
wraps each event in a ``Body`` whose views point back at it, so every event's dicts are freed by
the collector, not by reference counting; at 700 it ran every few events and took 12.4 s of 54 s
of operator CPU at 1 000 (docs/benchmarks.md, "The cyclic garbage collector"). The garbage waits a
little longer: a few tens of MB at 1 000 deployments, measured against the 250 MB bound."""


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: list[str] | None = None,
    liveness_port: int | None = 8080,
    metrics_port: int | None = None,
    lease: tuple[str, str] | None = None,
    lease_duration: int = 15,
    kubeconfig: Path | None = None,
    verbose: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM.

    ``namespaces`` scopes the operator (it then needs only namespaced permissions); without it
    the operator watches the whole cluster. ``lease`` (namespace, name) turns on leader
    election: of several replicas, only the one holding that Lease writes anything
    (``controller/leader.py``); without it the operator runs alone.
    """
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    api = load_client(str(kubeconfig) if kubeconfig else None)
    config = dataclasses.replace(config, kserve_canary=kserve_features.resolve(config, api))
    register(registry, config)
    state = State(config, Kube(api), namespaces)
    if lease is not None:
        from kubernetes import client

        state.election = LeaderElection(
            client.CoordinationV1Api(api),
            namespace=lease[0],
            name=lease[1],
            identity=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
            timing=Timing(
                duration_seconds=lease_duration,
                deadline_seconds=lease_duration * 2 / 3,
                renew_seconds=max(1.0, lease_duration / 7),
            ),
        )
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    if metrics_port:
        metrics.serve(metrics_port)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    use_orjson_for_watches()
    # What is loaded by now (modules, the registry, the configuration) lives as long as the
    # process: frozen, the collector's full passes no longer walk it.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        kopf.run(
            registry=registry,
            memo=kopf.Memo(state=state),
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            liveness_endpoint=(
                f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
            ),
            standalone=True,  # one writer is the Lease's business, not kopf's peering
        )
    finally:
        api.close()
