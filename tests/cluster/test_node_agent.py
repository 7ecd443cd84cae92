"""The node agent runs pods as the kubelet would, for the real controllers of the KServe
cluster (``tests/support/kubelet``): exit codes and termination messages, the ServiceAccount
token and ``KUBERNETES_SERVICE_HOST`` that lead to the API server, Service ClusterIPs, and
liveness probes that restart a container.

The pods run ``python`` from our operator image (the image table runs it from this checkout).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import KServeCluster, wait_until

pytestmark = [pytest.mark.cluster]

IMAGE = "ghcr.io/modeldeploy/operator:0.1.0"


def _pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": IMAGE, "command": ["python", "-c", script], **spec}]},
    }  # fmt: skip


def _finished(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    def read() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_until(f"pod {name} finished", read)


@pytest.fixture
def space(on_kserve: KServeCluster) -> str:
    namespace = f"agent-{time.monotonic_ns() % 10**8}"
    client.CoreV1Api(on_kserve.api).create_namespace({"metadata": {"name": namespace}})
    # The service-account controller makes the namespace's default ServiceAccount; the
    # ServiceAccount admission plugin refuses pods until it exists, as on any cluster.
    core = client.CoreV1Api(on_kserve.api)
    wait_until("default account", lambda: core.list_namespaced_service_account(namespace).items)
    return namespace


def test_a_failed_container_reports_its_exit_code_and_its_termination_message(
    kserve_cluster: KServeCluster, space: str
) -> None:
    core = client.CoreV1Api(kserve_cluster.api)
    script = "open('/dev/termination-log', 'w').write('model too large: 3 GiB > 2 GiB'); exit(3)"
    core.create_namespaced_pod(space, _pod("fails", script))
    pod = _finished(core, space, "fails")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message == "model too large: 3 GiB > 2 GiB"


def test_a_pod_reaches_the_api_server_as_its_service_account_through_the_kubernetes_service(
    kserve_cluster: KServeCluster, space: str
) -> None:
    core = client.CoreV1Api(kserve_cluster.api)
    # In-cluster configuration, as the operator's pod loads it: KUBERNETES_SERVICE_HOST and
    # _PORT, and the token and CA of the projected kube-api-access volume.
    script = (
        "import json, os\n"
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "review = client.AuthenticationV1Api().create_self_subject_review({})\n"
        "open('/dev/termination-log', 'w').write(json.dumps({\n"
        "    'host': os.environ['KUBERNETES_SERVICE_HOST'],\n"
        "    'user': review.status.user_info.username}))\n"
    )
    core.create_namespaced_pod(space, _pod("whoami", script))
    pod = _finished(core, space, "whoami")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded", terminated.message
    told = json.loads(terminated.message)
    kubernetes = core.read_namespaced_service("kubernetes", "default")
    assert told == {"host": kubernetes.spec.cluster_ip,
                    "user": f"system:serviceaccount:{space}:default"}  # fmt: skip


def test_a_pod_reaches_another_pods_service_at_its_cluster_ip_and_by_its_dns_names(
    kserve_cluster: KServeCluster, space: str
) -> None:
    core = client.CoreV1Api(kserve_cluster.api)
    server = _pod("web", "import http.server as s; s.test(s.SimpleHTTPRequestHandler, port=8080, bind='0.0.0.0')",
                  ports=[{"name": "http", "containerPort": 8080}],
                  readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1})  # fmt: skip
    server["metadata"]["labels"] = {"app": "web"}
    server["spec"]["restartPolicy"] = "Always"
    core.create_namespaced_pod(space, server)
    service = core.create_namespaced_service(space, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})  # fmt: skip

    def ready() -> bool:
        statuses = core.read_namespaced_pod("web", space).status.container_statuses
        return bool(statuses and statuses[0].ready)

    wait_until("web ready", ready)
    # By address, by full name, and by the short name the search path completes.
    urls = [f"http://{service.spec.cluster_ip}:80/", f"http://web.{space}.svc.cluster.local/",
            "http://web/"]  # fmt: skip
    script = (
        "import json, socket, urllib.request\n"
        f"codes = [urllib.request.urlopen(u, timeout=5).status for u in {urls!r}]\n"
        "try:\n"
        "    socket.gethostbyname('nowhere.example.com')\n"
        "    codes.append('resolved')\n"
        "except OSError:\n"
        "    codes.append('nxdomain')\n"
        "open('/dev/termination-log', 'w').write(json.dumps(codes))\n"
    )
    # The EndpointSlice controller lists the ready pod; the rules follow it (synced here, so
    # the client's namespace starts with them rather than up to a second later).
    discovery = client.DiscoveryV1Api(kserve_cluster.api)
    wait_until("web's endpoint", lambda: [e for piece in discovery.list_namespaced_endpoint_slice(
        space, label_selector="kubernetes.io/service-name=web").items
        for e in piece.endpoints or [] if e.conditions.ready])  # fmt: skip
    kserve_cluster.agent.proxy.sync()
    core.create_namespaced_pod(space, _pod("client", script))
    pod = _finished(core, space, "client")
    message = pod.status.container_statuses[0].state.terminated.message
    assert json.loads(message) == [200, 200, 200, "nxdomain"], message


def test_a_failing_liveness_probe_has_the_container_stopped_and_restarted(
    kserve_cluster: KServeCluster, space: str
) -> None:
    core = client.CoreV1Api(kserve_cluster.api)
    # Live while /data/alive exists; the first run removes it after 2 s.
    script = (
        "import http.server as s, os, threading, time\n"
        "first = not os.path.exists('/data/ran')\n"
        "open('/data/ran', 'w').close(); open('/data/alive', 'w').close()\n"
        "class H(s.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if os.path.exists('/data/alive') else 500)\n"
        "        self.end_headers()\n"
        "if first: threading.Timer(2, os.remove, ['/data/alive']).start()\n"
        "s.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
    )
    pod = _pod("flaky", script, volumeMounts=[{"name": "work", "mountPath": "/data"}],
               livenessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1,
                              "failureThreshold": 2})  # fmt: skip
    pod["spec"]["restartPolicy"] = "Always"
    pod["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    core.create_namespaced_pod(space, pod)

    def restarted_and_running() -> Any:
        status = core.read_namespaced_pod("flaky", space).status.container_statuses
        return status and status[0].restart_count == 1 and status[0].state.running and status[0]

    status = wait_until("one restart", restarted_and_running, timeout=90)
    # Killed for failing its probe: SIGTERM within the grace period, 128 + 15.
    assert status.last_state.terminated.exit_code == 143
