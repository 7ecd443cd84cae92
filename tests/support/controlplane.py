"""A real Kubernetes control plane for tests: etcd + kube-apiserver on loopback, envtest-style.

No kubelet and no controllers, but real admission, schema validation, CEL rules, status
subresources, resource versions, watches and server-side apply. The API server serves TLS with a
certificate made for this run and trusts a client certificate in ``system:masters``; both are in
the kubeconfig it writes. Ports are picked at run time, so several runs can share a machine.

Used by the pytest fixtures in ``tests/conftest.py`` and by ``make envtest-up`` (through
``python -m tests.support``), which leaves one running for people to use with kubectl.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "hack" / "envtest" / "setup.sh"
OUR_CRDS = REPO_ROOT / "crds"

_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message carries the logs' last lines."""


@dataclass(frozen=True)
class Assets:
    """Where the binaries and the third-party CRDs are."""

    bin_dir: Path
    crd_dir: Path

    @classmethod
    def provide(cls) -> Assets:
        """Run ``hack/envtest/setup.sh``: builds what is missing, then reports the folders."""
        result = subprocess.run(
            ["bash", str(SETUP_SCRIPT)], check=False, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ControlPlaneError(f"{SETUP_SCRIPT} failed:\n{result.stderr[-4000:]}")
        bin_dir, crd_dir = result.stdout.split()
        return cls(Path(bin_dir), Path(crd_dir))

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def account_token(api: Any, namespace: str, account: str, path: Path, hours: int = 24) -> Path:
    """A token of ServiceAccount ``namespace/account`` from the TokenRequest API, as the kubelet
    projects one into a pod, written to ``path`` (0600) for a process the cluster runs as it."""
    from kubernetes import client

    request = {"spec": {"expirationSeconds": hours * 3600, "audiences": []}}
    made = client.CoreV1Api(api).create_namespaced_service_account_token(account, namespace,
                                                                         request)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(made.status.token)
    path.chmod(0o600)
    return path


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, however it dies.

    SIGKILL, not SIGTERM: a kube-apiserver told to stop gracefully while etcd is going away too
    waits for etcd for minutes. Nothing here holds data worth a graceful stop.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_certificates(directory: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 and an admin client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("modeldeploy-envtest-ca"))
        .issuer_name(name("modeldeploy-envtest-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_key(ca_key, directory / "ca.key")

    def leaf(cn: str, org: str | None, server: bool) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        # What pods call it by: the ``kubernetes`` Service's ClusterIP (the
                        # first of --service-cluster-ip-range) and its names.
                        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key

    for stem, cn, org, server in (
        ("apiserver", "kube-apiserver", None, True),
        ("admin", "modeldeploy-envtest-admin", "system:masters", False),
    ):
        cert_pem, key = leaf(cn, org, server)
        (directory / f"{stem}.crt").write_bytes(cert_pem)
        write_key(key, directory / f"{stem}.key")

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(sa_key, directory / "sa.key")
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def start_process(
    args: list[str], log: Path, env: dict[str, str] | None = None, detached: bool = False
) -> subprocess.Popen[bytes]:
    """One of the cluster's processes, in a session of its own, its output appended to ``log``;
    it dies with this Python process unless ``detached``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,
            env=env,
        )


class Child(Protocol):
    """A process this code started: a ``subprocess.Popen``, or a child of the local executor's
    pre-imported template (``tests.support.prefork``)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def stop_group(process: Child, grace: float = 15.0) -> None:
    """SIGTERM a process started with ``start_new_session``, and its whole group; SIGKILL the
    group if it is still there after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Cluster:
    """A cluster the tests can reach: a kubeconfig, and the pinned kubectl to use with it."""

    assets: Assets

    @property
    def kubeconfig(self) -> Path:
        raise NotImplementedError

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane."""
        return subprocess.run(
            [self.assets.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
        )

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply of ``obj`` as the test set-up's field manager."""
        result = self.kubectl(
            "apply", "--server-side", "--field-manager=modeldeploy-envtest", "-f", "-",
            input=json.dumps(obj), check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ControlPlaneError(f"applying {obj['kind']} failed: {result.stderr}")

    def crd_files(self) -> list[Path]:
        """Third-party CRDs (KServe, Gateway API), then ours."""
        return sorted(self.assets.crd_dir.glob("*.yaml")) + sorted(OUR_CRDS.glob("*.yaml"))

    def install_crds(self, timeout: float = 60.0) -> None:
        """Server-side apply every CRD (the InferenceService one is too big for client-side
        apply's last-applied annotation) and wait until all are Established."""
        args = [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modeldeploy-envtest",
        ]
        for path in self.crd_files():
            args += ["-f", str(path)]
        result = self.kubectl(*args, check=False)
        if result.returncode != 0:
            raise ControlPlaneError(f"installing CRDs failed:\n{result.stderr}")
        deadline = time.monotonic() + timeout
        while True:
            result = self.kubectl(
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                f"--timeout={timeout:.0f}s",
                check=False,
            )
            if result.returncode == 0:
                return
            # kubectl wait fails outright on a CRD whose status is not written yet.
            if "accessor error" not in result.stderr or time.monotonic() > deadline:
                raise ControlPlaneError(f"CRDs not established:\n{result.stderr}")
            time.sleep(0.2)


@dataclass
class ExistingCluster(Cluster):
    """A real cluster named by a kubeconfig (``MODELDEPLOY_TEST_KUBECONFIG``), used as it is.

    Only our CRD is installed there; KServe and the Gateway API must already be installed.
    """

    assets: Assets
    config_path: Path

    @property
    def kubeconfig(self) -> Path:
        return self.config_path

    def crd_files(self) -> list[Path]:
        return sorted(OUR_CRDS.glob("*.yaml"))


@dataclass
class ControlPlane(Cluster):
    """etcd and kube-apiserver in ``workdir``, with our CRDs and the third-party ones installed.

    ``detached=True`` leaves the processes running after this Python process exits (for
    ``make envtest-up``); otherwise they die with it, even on SIGKILL.
    """

    workdir: Path
    assets: Assets
    detached: bool = False
    audit: bool = False
    """Log every write (create, update, patch, delete) with its user agent to ``audit.log``,
    and a ModelDeployment status patch with its body: how ``bench_operator`` and
    ``bench_canary`` count the writes each client makes."""
    with_controllers: bool = False
    """kube-controller-manager will run (``tests/support/cluster.py``): its service-account
    controller makes the ServiceAccounts pods name, so the ServiceAccount admission plugin is
    on, and pods get their ``kube-api-access-*`` token volume as on any cluster."""
    advertise_address: str = "127.0.0.1"
    """Where the API server tells clients in the cluster to find it (the ``kubernetes``
    Service's endpoint). Anything but loopback, which no EndpointSlice may hold, has it listen
    on every address: a node's pods reach it on the node's bridge."""
    etcd_port: int = 0
    apiserver_port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        proc = start_process(args, self.workdir / f"{name}.log", detached=self.detached)
        self.processes[name] = proc
        (self.workdir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def start(self, timeout: float = 120.0) -> None:
        """Start etcd and the API server, wait until ready, install CRDs."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "pki"
        certs.mkdir(exist_ok=True)
        _write_certificates(certs)
        self.etcd_port, peer_port, self.apiserver_port = free_port(), free_port(), free_port()
        try:
            self._start_etcd(peer_port)
            self._start_apiserver(certs)
            self._wait_ready(timeout)
            self._write_kubeconfig(certs)
            self.install_crds(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self, peer_port: int) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                self.assets.binary("etcd"),
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--max-request-bytes=10485760",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self, certs: Path) -> None:
        self._spawn(
            "kube-apiserver",
            [
                self.assets.binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address="
                + ("127.0.0.1" if self.advertise_address == "127.0.0.1" else "0.0.0.0"),
                f"--advertise-address={self.advertise_address}",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'apiserver.crt'}",
                f"--tls-private-key-file={certs / 'apiserver.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # Without controllers nothing would create the ServiceAccounts pods name.
                *([] if self.with_controllers else ["--disable-admission-plugins=ServiceAccount"]),
                "--enable-priority-and-fairness=false",
                "--v=1",
                *self._audit_args(),
            ],
        )

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(json.dumps({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [
                # A status patch's body too: what it changed (a rollout's step, or only the
                # analysis numbers) is what bench_canary sorts the writes by.
                {"level": "Request", "verbs": ["patch"], "resources": [
                    {"group": "modeldeploy.io", "resources": ["modeldeployments/status"]}]},
                {"level": "Metadata",
                 "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
                # Reads too (not watches): bench_operator counts the operator's GETs and lists.
                {"level": "Metadata", "verbs": ["get", "list"]},
                {"level": "None"}],
        }))  # fmt: skip
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-mode=batch",
                "--audit-log-maxsize=0"]  # fmt: skip

    def _ssl_context(self) -> ssl.SSLContext:
        certs = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
        return ctx

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = self._ssl_context()
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {proc.returncode} during start-up:\n{self.log_tails()}"
                    )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last}):\n{self.log_tails()}"
        )

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {name}.log (last lines) ---\n{_tail(self.workdir / f'{name}.log')}"
            for name in ("etcd", "kube-apiserver")
        )

    def _write_kubeconfig(self, certs: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(certs / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "envtest-admin",
                    "user": {
                        "client-certificate": str(certs / "admin.crt"),
                        "client-key": str(certs / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-admin"}}
            ],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the API server, then etcd; kill whatever does not stop in ``grace`` seconds."""
        for name in ("kube-apiserver", "etcd"):
            proc = self.processes.pop(name, None)
            if proc is None:
                continue
            stop_group(proc, grace)
            (self.workdir / f"{name}.pid").unlink(missing_ok=True)


def stop_detached(workdir: Path, grace: float = 10.0) -> list[str]:
    """Stop a control plane that ``ControlPlane(detached=True)`` left running; names what it stopped."""
    stopped = []
    for name in ("kube-apiserver", "etcd"):
        pid_file = workdir / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()
        stopped.append(name)
    return stopped
