"""``make bench`` for the Standard-mode canary on KServe 0.20's ``spec.canary``, on the KServe
cluster (``tests/support/cluster.py``): KServe's own manager, the real controllers, the node
agent's pods, and every request through Traefik. Figures only; nothing here
asserts a speed.

1. rollout overhead: a canary of two steps (50%, then 80%, each held 5 s), from "the new
   artifact is staged" (the rollout is Progressing) to Promoted (KServe's rename done and
   stable's Deployment rolled out), minus the 10 s of pauses. The operator runs as a local
   process here, so live parity is off (the canary's Service name resolves only in pods).
2. abort → 0%: ``modeldeploy.io/abort`` set on a canary at 50%, until the route reads 0% on the
   canary, and until 50 requests in a row through the gateway are answered by stable; n=3.
3. parity canary → RolledBack: the operator as the chart's pod; a canary whose golden outputs
   were shifted, from the pause being lifted at its step until the status says RolledBack.

A closed-loop client runs through all of it; its failures are printed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.cluster.test_kserve_canary import (
    ABS,
    MD,
    NAME,
    RELU,
    ClosedLoop,
    _infer,
    local_operator,
)
from tests.runtime import graphs
from tests.support import Assets
from tests.support.cluster import KServeCluster, through_gateway, wait_until
from tests.support.golden import tamper_golden_outputs

NS, PARITY_NS = "bench", "bench-parity"
PAUSE_S = 5


class Bench:
    def __init__(self, cluster: KServeCluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.host = f"{NAME}.{namespace}.example.com"

    def status(self) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(*MD[:2], self.namespace, MD[2], NAME)
        return dict(found.get("status") or {})

    def phase(self) -> str:
        return str((self.status().get("rollout") or {}).get("phase") or "")

    def patch(self, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(*MD[:2], self.namespace, MD[2], NAME, body)

    def route_canary_weight(self) -> int:
        route = self.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", f"{NAME}-traffic"
        )
        refs = route["spec"]["rules"][0]["backendRefs"]
        return sum(int(r["weight"]) for r in refs[1:])

    def create(self, rollout: dict[str, Any]) -> None:
        doc = graphs.dtypes_deployment(ABS, NAME, self.namespace, rollout=rollout,
                                       serving={"resources": {"cpu": "1", "memory": "1Gi"}})  # fmt: skip
        self.custom.create_namespaced_custom_object(*MD[:2], self.namespace, MD[2], doc)
        wait_until("Ready", lambda: any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in self.status().get("conditions") or []),
                   timeout=240)  # fmt: skip
        through_gateway("the route answering", lambda: _infer(self.cluster.gateway.url, self.host))


def bench_rollout(bench: Bench) -> float:
    bench.patch({"spec": {"model": {"uri": RELU}}})
    staged = wait_until("Progressing", lambda: bench.phase() == "Progressing" and time.monotonic(),
                        timeout=240)  # fmt: skip
    promoted = wait_until("Promoted", lambda: bench.phase() == "Promoted" and time.monotonic(),
                          timeout=240)  # fmt: skip
    return float(promoted - staged - 2 * PAUSE_S)


def bench_abort(bench: Bench, uri: str, back: str) -> tuple[float, float]:
    """(route at 0%, gateway serving stable only) after the abort, in seconds."""
    bench.patch({"spec": {"rollout": {"steps": [{"weight": 50, "pause": "1h"}]},
                          "model": {"uri": uri}}})  # fmt: skip
    try:
        wait_until("the canary at 50%", lambda: (bench.status().get("traffic") or {}).get(
            "canary") == 50 and (bench.status().get("rollout") or {}).get("stepStartedAt"),
                   timeout=240)  # fmt: skip
    except AssertionError as err:
        isvc = bench.custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1",
                                                         bench.namespace, "inferenceservices", NAME)  # fmt: skip
        raise AssertionError(
            f"{err}\nstatus: {bench.status()}\nisvc: {isvc.get('spec')}\n{isvc.get('status')}"
        ) from err
    stable = "abs" if back == ABS else "relu"
    start = time.monotonic()
    bench.patch({"metadata": {"annotations": {"modeldeploy.io/abort": "true"}}})
    routed = wait_until("the route at 0%", lambda: bench.route_canary_weight() == 0 and
                        time.monotonic(), timeout=60)  # fmt: skip
    streak = 0
    while streak < 50:
        streak = streak + 1 if _infer(bench.cluster.gateway.url, bench.host) == stable else 0
    served = time.monotonic()
    bench.patch({"spec": {"model": {"uri": back}}})  # back on stable: the next abort is new
    # Back on stable once the aborted revision is no longer marked failed: the abort alone
    # already leaves no canary, and a next patch to the same revision before the operator saw
    # this one would be that failed revision again, which gets no traffic until a retry.
    wait_until("settled", lambda: not {"canary", "failed"} & set(
        bench.status().get("revisions") or {}), timeout=120)  # fmt: skip
    return routed - start, served - start


def bench_parity(bench: Bench) -> float:
    bench.patch({"metadata": {"annotations": {"modeldeploy.io/pause": "true"}},
                 "spec": {"model": {"uri": RELU}}})  # fmt: skip
    wait_until("paused at 20%", lambda: bench.phase() == "Paused" and (
        bench.status().get("traffic") or {}).get("canary") == 20, timeout=240)  # fmt: skip
    tamper_golden_outputs(bench.cluster.pvc_root / "artifacts" / "store" / bench.namespace,
                          bench.status()["artifact"]["key"], NAME)  # fmt: skip
    start = time.monotonic()
    bench.patch({"metadata": {"annotations": {"modeldeploy.io/pause": None}}})
    rolled = wait_until("RolledBack", lambda: bench.phase() == "RolledBack" and time.monotonic(),
                        timeout=120)  # fmt: skip
    return float(rolled - start)


def main() -> None:
    assets = Assets.provide()
    with tempfile.TemporaryDirectory(prefix="bench-kserve-canary-") as tmp:
        cluster = KServeCluster(Path(tmp))
        cluster.start(assets)
        stack = None
        try:
            stack = local_operator(cluster, "operator", NS, PARITY_NS)
            bench = Bench(cluster, NS)
            steps = [{"weight": 50, "pause": f"{PAUSE_S}s"}, {"weight": 80, "pause": f"{PAUSE_S}s"}]
            bench.create({"steps": steps, "analysis": {"liveParity": False, "interval": "1s"}})
            with ClosedLoop(cluster.gateway.url, bench.host) as load:
                overhead = bench_rollout(bench)
                aborts = [bench_abort(bench, uri, back)
                          for uri, back in ((ABS, RELU), (ABS, RELU), (ABS, RELU))]  # fmt: skip
            stack.stop()
            stack = None
            cluster.install_chart("pvc://artifacts/store", PARITY_NS)
            parity = Bench(cluster, PARITY_NS)
            parity.create({"steps": [{"weight": 20, "pause": "1h"}]})
            with ClosedLoop(cluster.gateway.url, parity.host) as parity_load:
                detection = bench_parity(parity)
        finally:
            if stack is not None:
                stack.stop()
            cluster.stop()
    routed = [a[0] for a in aborts]
    served = [a[1] for a in aborts]
    print("benchmark (KServe 0.20 spec.canary, real KServe, Traefik)               value")
    print(f"rollout overhead beyond its 2 x {PAUSE_S} s of pauses                      "
          f"{overhead:.1f} s")  # fmt: skip
    print(f"abort → route at 0% on the canary (n={len(routed)})                         "
          f"median {statistics.median(routed) * 1000:.0f} ms, max {max(routed) * 1000:.0f} ms")  # fmt: skip
    print(f"abort → 50 requests in a row answered by stable (n={len(served)})         "
          f"median {statistics.median(served) * 1000:.0f} ms, max {max(served) * 1000:.0f} ms")  # fmt: skip
    print(f"parity canary: pause lifted → RolledBack (chart's operator pod)   {detection:.1f} s")
    print(f"closed-loop client, rollout and aborts: {dict(load.answers)} answered, "
          f"{len(load.failures)} failed")  # fmt: skip
    print(f"closed-loop client, parity rollback: {dict(parity_load.answers)} answered, "
          f"{len(parity_load.failures)} failed")  # fmt: skip


if __name__ == "__main__":
    main()
