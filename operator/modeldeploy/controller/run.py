"""``modeldeploy operator``: the watches, the work queue, the resync, the election and the
liveness endpoint on one event loop, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import signal
import socket
from pathlib import Path

from aiohttp import web

from modeldeploy.controller import handlers, kserve_features, metrics
from modeldeploy.controller.bodies import Key
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.engine import State, converge_or_schedule, on_elected, resync_forever
from modeldeploy.controller.informer import Informer
from modeldeploy.controller.kube import Kube, load_client
from modeldeploy.controller.leader import LeaderElection, Timing
from modeldeploy.controller.work_queue import WorkQueue

log = logging.getLogger("modeldeploy.operator")

LOG_FORMAT = "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s"

READY = "watching"
"""The first word of the line logged once every watch has listed (what tests wait for)."""

GC_THRESHOLD = (5000, 10, 10)
"""The cyclic collector's thresholds: a young collection per 5 000 allocations, not 700. At 700
it ran every few events and took 12.4 s of 54 s of operator CPU at 1 000 ModelDeployments
(docs/benchmarks.md, "The cyclic garbage collector"), then under kopf, whose per-event objects
pointed back at each other. The garbage waits a little longer: a few tens of MB at 1 000
deployments, measured against the 250 MB bound."""


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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    api = load_client(str(kubeconfig) if kubeconfig else None)
    config = dataclasses.replace(config, kserve_canary=kserve_features.resolve(config, api))
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
    if metrics_port:
        metrics.serve(metrics_port)
    # What is loaded by now (modules, the configuration) lives as long as the process: frozen,
    # the collector's full passes no longer walk it.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        asyncio.run(_operate(state, liveness_port))
    finally:
        api.close()


async def _operate(state: State, liveness_port: int | None) -> None:
    """Everything on one loop until a signal; then the watches and workers stop, and the
    election, last, gives the Lease up."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    liveness = await _serve_liveness(liveness_port) if liveness_port else None

    async def work(key: Key) -> float | None:
        requeue = await converge_or_schedule(state, key[0], key[1], log)
        log.debug(f"converged {key[0]}/{key[1]}")
        return requeue

    queue = WorkQueue(work, state.config.workers)
    runtimes, watches = handlers.informers(state, queue.add)
    election = (
        asyncio.create_task(state.election.run(on_elected(state)), name="election")
        if state.election is not None
        else None
    )
    tasks = [asyncio.create_task(w.run(), name=str(w)) for w in runtimes]
    try:
        started = asyncio.create_task(_start(state, runtimes, watches, queue, tasks))
        await stopping.wait()
        started.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if election is not None:
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election  # gives the Lease up on its way out
        await state.kube.aclose()  # its connections belong to this loop
        if liveness is not None:
            await liveness.cleanup()
        log.info("stopped")


async def _start(
    state: State,
    runtimes: list[Informer],
    watches: list[Informer],
    queue: WorkQueue,
    tasks: list[asyncio.Task[None]],
) -> None:
    """The runtimes listed first (a ModelDeployment looked at before its runtime is known would
    be reported as naming a missing one), then the rest of the watches; the workers and the
    resync start once every watch has listed, so that no look decides from a memory that has
    not yet been filled (a staging Job not yet listed would read as never created). What the
    listings queue meanwhile waits in the queue."""
    await asyncio.gather(*(w.synced.wait() for w in runtimes))
    tasks.extend(asyncio.create_task(w.run(), name=str(w)) for w in watches)
    await asyncio.gather(*(w.synced.wait() for w in watches))
    tasks.append(asyncio.create_task(queue.run(), name="workers"))
    tasks.append(asyncio.create_task(resync_forever(state, queue.add, log), name="resync"))
    scope = ", ".join(state.namespaces) if state.namespaces else "all namespaces"
    log.info(f"{READY} {scope}: {len(runtimes) + len(watches)} resources listed")


async def _serve_liveness(port: int) -> web.AppRunner:
    """``GET /healthz``: 200 while the event loop answers."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
