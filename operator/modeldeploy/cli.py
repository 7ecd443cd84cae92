"""The ``modeldeploy`` command line. Works without a cluster."""

from __future__ import annotations

import json
import os
import sys
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import yaml

from modeldeploy import __version__
from modeldeploy.api import mirror
from modeldeploy.api.crd import render_yaml
from modeldeploy.api.reference import render_markdown
from modeldeploy.api.validation import validate_document

if TYPE_CHECKING:
    from modeldeploy.api.modeldeployment import ModelDeployment


class ExitCode(IntEnum):
    """What every command's exit status means (docs/cli.md)."""

    OK = 0
    FAILURE = 1
    """The cluster or the store could not do what was asked: not found, unreachable, refused."""
    USAGE = 2
    """The command line is wrong: an unknown option, a missing argument (click's own code)."""
    INVALID = 3
    """A file or artifact is not valid: the message names the field path."""


app = typer.Typer(
    name="modeldeploy",
    help="Stage, verify and serve trained models on KServe, and roll them out by canary.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the ModelDeploy version."""
    typer.echo(__version__)


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="ModelDeployment YAML or JSON files; '-' reads stdin.")
    ],
) -> None:
    """Check ModelDeployment files against the API; print every problem with its field path.

    Other kinds in a bundle (a Namespace, a Secret) are skipped and named. Exits 0 when every
    ModelDeployment is valid, 3 when any is not or a file holds none.
    """
    from modeldeploy.api.modeldeployment import KIND

    invalid = 0
    for file in files:
        name = "<stdin>" if str(file) == "-" else str(file)
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except (OSError, yaml.YAMLError) as err:
            typer.echo(f"{name}: cannot read: {err}", err=True)
            invalid += 1
            continue
        others = [d for d in docs if _other_kind(d, KIND)]
        if len(others) == len(docs):
            typer.echo(f"{name}: no ModelDeployment", err=True)
            invalid += 1
        for index, doc in enumerate(docs):
            where = name if len(docs) == 1 else f"{name}[{index}]"
            if doc in others:
                typer.echo(f"{where}: skipped {_other_kind(doc, KIND)} (not a ModelDeployment)")
                continue
            problems = validate_document(doc)
            if problems:
                invalid += 1
                for problem in problems:
                    typer.echo(f"{where}: {problem}", err=True)
            else:
                label = doc.get("metadata", {}).get("name", "?")
                typer.echo(f"{where}: ModelDeployment {label} is valid")
    if invalid:
        raise typer.Exit(code=ExitCode.INVALID)


def _other_kind(doc: Any, kind: str) -> str | None:
    """``Kind name`` of a well-formed object of another kind, which ``validate`` skips; None for
    a ModelDeployment, or for anything that does not say what it is (which is refused)."""
    if not isinstance(doc, dict) or not doc.get("apiVersion") or doc.get("kind") in (None, kind):
        return None
    return f"{doc['kind']} {(doc.get('metadata') or {}).get('name', '?')}"


class StagingStep(StrEnum):
    """Which part of staging to run: all of it, or one of the staging Job's three containers."""

    ALL = "all"
    FETCH = "fetch"
    BUILD = "build"
    PUBLISH = "publish"


@app.command()
def stage(
    dest: Annotated[
        str | None,
        typer.Option(
            "--dest",
            envvar="MODELDEPLOY_ARTIFACT_STORE",
            help="Artifact store: s3://bucket/prefix, pvc://claim/prefix, file:///path or a path "
            "(every step but build).",
        ),
    ] = None,
    step: Annotated[
        StagingStep,
        typer.Option(
            "--step",
            envvar="MODELDEPLOY_STAGING_STEP",
            help="all: everything in this process. fetch, build, publish: one container of the "
            "staging Job, handing over through --inputs and --staged (docs/security.md).",
        ),
    ] = StagingStep.ALL,
    inputs: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELDEPLOY_STAGING_INPUTS",
            help="fetch writes the model, labels, calibration and plan here; build and publish "
            "only read it.",
        ),
    ] = None,
    staged: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELDEPLOY_STAGING_OUTPUT",
            help="build writes the artifact here; publish verifies it from here.",
        ),
    ] = None,
    code_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELDEPLOY_CODE_DIR",
            help="Folder put on sys.path for state_dict entrypoints and pickled module classes.",
        ),
    ] = None,
    termination_log: Annotated[
        Path,
        typer.Option(
            envvar="MODELDEPLOY_TERMINATION_LOG", help="Also write the summary here, if it exists."
        ),
    ] = Path("/dev/termination-log"),
    owner: Annotated[
        str | None,
        typer.Option(
            envvar="MODELDEPLOY_OWNER",
            help="namespace.name of the ModelDeployment using the artifact (recorded in the store).",
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Argument(
            help="A ModelDeployment YAML/JSON file; '-' reads stdin; omitted: the JSON in "
            "$MODELDEPLOY_DEPLOYMENT (how the operator's staging Job passes it)."
        ),
    ] = None,
) -> None:
    """Fetch, convert, optimize, verify and store the model of a ModelDeployment.

    Prints one JSON summary on stdout. Exits 0 on success (a cache hit included), 3 for an
    invalid spec, and 10-22 for a staging failure (see docs/staging.md).
    """
    from modeldeploy.api.validation import InvalidSpecError, parse
    from modeldeploy.staging.errors import StagingError
    from modeldeploy.staging.plan import summary_for_error, write_termination_log

    try:
        if deployment is None:
            text = os.environ.get("MODELDEPLOY_DEPLOYMENT", "")
            if not text:
                raise OSError("no file given and $MODELDEPLOY_DEPLOYMENT is empty")
        else:
            text = sys.stdin.read() if str(deployment) == "-" else deployment.read_text()
        parsed = parse(yaml.safe_load(text))
        if step != StagingStep.BUILD and not dest:
            raise OSError("--dest (or $MODELDEPLOY_ARTIFACT_STORE) is required")
        one_step = step != StagingStep.ALL
        if one_step and (inputs is None or (step != StagingStep.FETCH and staged is None)):
            raise OSError(f"--step {step.value} needs --inputs and, after fetch, --staged")
    except (OSError, yaml.YAMLError, InvalidSpecError) as err:
        summary = {
            "status": "Failed",
            "reason": "InvalidSpec",
            "message": str(err),
            "exitCode": int(ExitCode.INVALID),
        }
        typer.echo(json.dumps(summary))
        write_termination_log(summary, termination_log)
        raise typer.Exit(code=ExitCode.INVALID) from err
    try:
        summary = _staging_step(step, parsed, str(dest), inputs, staged, code_dir, owner)
    except StagingError as err:
        summary = summary_for_error(err)
        typer.echo(json.dumps(summary))
        write_termination_log(summary, termination_log)
        raise typer.Exit(code=err.exit_code) from err
    typer.echo(json.dumps(summary))
    write_termination_log(summary, termination_log)


def _staging_step(
    step: StagingStep,
    deployment: ModelDeployment,
    dest: str,
    inputs: Path | None,
    staged: Path | None,
    code_dir: Path | None,
    owner: str | None,
) -> dict[str, Any]:
    """Run ``step``; its summary (the Job's publish step writes the one the operator reads).
    Only ``all`` and ``build`` import torch: fetch and publish start in a fraction of the time."""
    from modeldeploy.staging.plan import StagingPlan

    if step == StagingStep.ALL:
        from modeldeploy.staging.stage import stage as run_stage

        return run_stage(deployment, dest, code_dir=code_dir, owner=owner).to_json()
    assert inputs is not None
    if step == StagingStep.FETCH:
        from modeldeploy.staging.prepare import prepare

        plan = prepare(deployment, dest, inputs, code_dir)
        return {"status": "Fetched", "key": plan.key, "cacheHit": plan.cache_hit}
    assert staged is not None
    plan = StagingPlan.read(inputs)
    if step == StagingStep.BUILD:
        from modeldeploy.staging.stage import build

        if not plan.cache_hit:
            build(deployment, plan, inputs, staged, code_dir)
        return {"status": "Built", "key": plan.key, "cacheHit": plan.cache_hit}
    from modeldeploy.staging.publish import publish

    return publish(deployment, plan, staged, dest, owner).to_json()


@app.command()
def serve(
    path: Annotated[
        Path,
        typer.Argument(
            help="A model repository from `modeldeploy stage` (KServe mounts it at /mnt/models)."
        ),
    ] = Path("/mnt/models"),
    http_port: Annotated[
        int, typer.Option(envvar="MODELDEPLOY_HTTP_PORT", help="REST port.")
    ] = 8080,
    grpc_port: Annotated[
        int, typer.Option(envvar="MODELDEPLOY_GRPC_PORT", help="gRPC port.")
    ] = 8081,
    model_name: Annotated[
        str | None, typer.Option(help="Which model directory to serve when there are several.")
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            envvar="MODELDEPLOY_MAX_BATCH_SIZE",
            help="Overrides the manifest; 1 turns batching off.",
        ),
    ] = None,
    max_queue_delay_ms: Annotated[
        float | None,
        typer.Option(envvar="MODELDEPLOY_MAX_QUEUE_DELAY_MS", help="Overrides the manifest."),
    ] = None,
    max_request_kb: Annotated[
        int, typer.Option(help="Largest accepted input tensor, in KiB.")
    ] = 65536,
    max_body_kb: Annotated[
        int | None,
        typer.Option(
            help="Largest REST body, in KiB (413 while reading); default 4x the tensor limit."
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log a line per HTTP request (off: the metrics count them).")
    ] = False,
    max_image_pixels: Annotated[
        int, typer.Option(help="Largest image, width x height, checked before decoding.")
    ] = 4096 * 4096,
    max_queue_size: Annotated[
        int | None,
        typer.Option(
            envvar="MODELDEPLOY_MAX_QUEUE_SIZE",
            help="Overrides the manifest: most requests waiting for a batch (503 beyond).",
        ),
    ] = None,
    request_timeout_ms: Annotated[
        float | None,
        typer.Option(
            envvar="MODELDEPLOY_REQUEST_TIMEOUT_MS",
            help="Overrides the manifest: one request's deadline (504 beyond).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="ONNX Runtime intra-op threads; default: the container's CPU limit."),
    ] = None,
    drift_window: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="MODELDEPLOY_DRIFT_WINDOW",
            help="Drift statistics cover the last this many requests (docs/monitoring.md).",
        ),
    ] = 1000,
    drift_window_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            envvar="MODELDEPLOY_DRIFT_WINDOW_SECONDS",
            help="... and none older than this.",
        ),
    ] = 600.0,
    shadow_config: Annotated[
        Path,
        typer.Option(
            envvar=mirror.CONFIG_ENV,
            help="The shadow file the operator's ConfigMap mounts: whom to mirror to "
            "(docs/canary.md#shadow); absent means no shadow.",
        ),
    ] = Path(mirror.MOUNT_PATH) / mirror.FILE,
    revision: Annotated[
        str | None,
        typer.Option(
            envvar=mirror.REVISION_ENV,
            help="The revision this pod serves; only the one the shadow file names mirrors.",
        ),
    ] = None,
) -> None:
    """Serve a staged model over the Open Inference Protocol v2 (REST and gRPC)."""
    from modeldeploy.runtime.artifact import ArtifactError
    from modeldeploy.runtime.drift import DriftWindow
    from modeldeploy.runtime.requests import Limits
    from modeldeploy.runtime.server import serve as run_server

    try:
        run_server(
            path,
            http_port=http_port,
            grpc_port=grpc_port,
            max_batch_size=max_batch_size,
            max_queue_delay=None if max_queue_delay_ms is None else max_queue_delay_ms / 1000,
            limits=Limits(
                max_bytes=max_request_kb << 10,
                max_body=(max_body_kb << 10) if max_body_kb else 4 * (max_request_kb << 10),
                max_image_pixels=max_image_pixels,
            ),
            threads=threads,
            name=model_name,
            max_queue_size=max_queue_size,
            request_timeout=None if request_timeout_ms is None else request_timeout_ms / 1000,
            access_log=access_log,
            drift=DriftWindow(drift_window, drift_window_seconds),
            shadow_config=shadow_config,
            revision=revision,
        )
    except ArtifactError as err:
        typer.echo(f"cannot serve: {err}", err=True)
        raise typer.Exit(code=ExitCode.INVALID) from err


@app.command()
def crd(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the Markdown field reference instead.")
    ] = False,
) -> None:
    """Print the ModelDeployment CustomResourceDefinition (what `make crds` writes)."""
    typer.echo(render_markdown() if reference else render_yaml(), nl=False)


@app.command()
def doctor(
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="The operator's namespace; default: the context's."),
    ] = None,
    selector: Annotated[
        str, typer.Option(help="Label selector of the operator's pods.")
    ] = "app.kubernetes.io/name=modeldeploy",
    runtime: Annotated[
        str | None,
        typer.Option(help="A ClusterServingRuntime that must be installed ('' checks none)."),
    ] = "modeldeploy-onnx",
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Default: in-cluster credentials, else $KUBECONFIG.")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="The kubeconfig context; default: the current.")
    ] = None,
) -> None:
    """Check the installation: the CRDs, the runtime, and every operator pod's health endpoint
    (at its own liveness probe's port and path). What `helm test` runs. Exits 1 on any failure."""
    from modeldeploy.doctor import run_checks
    from modeldeploy.rollout_control import RolloutControlError, connect

    try:
        api_client, default_namespace = connect(kubeconfig, context)
        checks = run_checks(api_client, namespace or default_namespace, selector, runtime or None)
    except RolloutControlError as err:
        _fail("doctor", err)
    except Exception as err:  # an API error or an unreachable server, in one line
        _fail("doctor", RuntimeError(str(err).splitlines()[0] if str(err) else repr(err)))
    for check in checks:
        typer.echo(check.line())
    if not all(c.ok for c in checks):
        raise typer.Exit(code=ExitCode.FAILURE)


@app.command()
def metrics() -> None:
    """Print the catalogue of metrics the runtime and the operator export, as Markdown (what
    `make crds` writes to docs/metrics.md)."""
    from modeldeploy.api.metric_names import render_catalogue

    typer.echo(render_catalogue(), nl=False)


artifacts = typer.Typer(help="Manage staged artifacts in an artifact store.", no_args_is_help=True)
app.add_typer(artifacts, name="artifacts")


@artifacts.command("release")
def artifacts_release(
    name: Annotated[str, typer.Option(help="The ModelDeployment's name.")],
    owner: Annotated[str, typer.Option(help="namespace.name recorded when it was staged.")],
    dest: Annotated[
        str,
        typer.Option("--dest", envvar="MODELDEPLOY_ARTIFACT_STORE", help="The artifact store."),
    ],
) -> None:
    """Drop OWNER's claim on NAME's artifacts; delete those no other ModelDeployment uses.

    Run by the operator's clean-up Job when a ModelDeployment is deleted.
    """
    from modeldeploy.artifacts.store import StoreError, open_store
    from modeldeploy.staging.errors import DestinationError

    try:
        deleted = open_store(dest).release(name, owner)
    except StoreError as err:
        typer.echo(f"cannot release artifacts: {err}", err=True)
        raise typer.Exit(code=DestinationError.exit_code) from err
    typer.echo(json.dumps({"released": owner, "deleted": deleted}))


@app.command()
def operator(
    artifact_store: Annotated[
        str | None,
        typer.Option(
            help="s3://bucket/prefix or pvc://claim/prefix [env MODELDEPLOY_ARTIFACT_STORE]"
        ),
    ] = None,
    artifact_store_secret: Annotated[
        str | None,
        typer.Option(help="Secret with S3 credentials [env MODELDEPLOY_ARTIFACT_STORE_SECRET]"),
    ] = None,
    staging_image: Annotated[
        str | None, typer.Option(help="[env MODELDEPLOY_STAGING_IMAGE]")
    ] = None,
    prometheus_address: Annotated[
        str | None,
        typer.Option(
            help="Prometheus for canary analysis when a ModelDeployment names none "
            "[env MODELDEPLOY_PROMETHEUS_ADDRESS]"
        ),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace", "-n", help="Watch only these namespaces (repeat); default: all."
        ),
    ] = None,
    liveness_port: Annotated[
        int, typer.Option(help="Port of the /healthz liveness endpoint; 0 turns it off.")
    ] = 8080,
    metrics_port: Annotated[
        int, typer.Option(help="Port of the operator's Prometheus /metrics; 0 turns it off.")
    ] = 0,
    leader_election: Annotated[
        bool,
        typer.Option(
            "--leader-election",
            help="Run as one of several replicas: only the holder of the Lease writes.",
        ),
    ] = False,
    lease_name: Annotated[str, typer.Option(help="The Lease of leader election.")] = (
        "modeldeploy-operator"
    ),
    lease_namespace: Annotated[
        str,
        typer.Option(envvar="POD_NAMESPACE", help="Namespace of the Lease (the operator's own)."),
    ] = "default",
    lease_duration: Annotated[
        int, typer.Option(min=2, max=300, help="Seconds a Lease not renewed stays its holder's.")
    ] = 15,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Default: in-cluster credentials, else $KUBECONFIG.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator: reconcile ModelDeployments into staging Jobs and InferenceServices."""
    from modeldeploy.controller.config import OperatorConfig
    from modeldeploy.controller.run import run_operator

    try:
        config = OperatorConfig.from_env(
            artifact_store=artifact_store,
            artifact_store_secret=artifact_store_secret,
            staging_image=staging_image,
            prometheus_address=prometheus_address,
        )
    except ValueError as err:
        typer.echo(f"modeldeploy operator: {err}", err=True)
        raise typer.Exit(code=ExitCode.USAGE) from err
    run_operator(
        config,
        namespaces=namespace,
        liveness_port=liveness_port or None,
        metrics_port=metrics_port or None,
        lease=(lease_namespace, lease_name) if leader_election else None,
        lease_duration=lease_duration,
        kubeconfig=kubeconfig,
        verbose=verbose,
    )


@app.command()
def render(
    file: Annotated[
        Path, typer.Argument(help="A ModelDeployment YAML/JSON file; '-' reads stdin.")
    ],
    artifact_store: Annotated[
        str | None,
        typer.Option(help="As the operator is configured [env MODELDEPLOY_ARTIFACT_STORE]"),
    ] = None,
    artifact_uri: Annotated[
        str | None,
        typer.Option(help="storageUri to show in the InferenceService; default: a placeholder."),
    ] = None,
) -> None:
    """Print every object the operator would create for a ModelDeployment, as YAML.

    Uses the operator's own builders and needs no cluster. The runtime is assumed installed
    with a GPU image; the artifact URI is only known after staging.
    """
    from modeldeploy.api.validation import InvalidSpecError, parse
    from modeldeploy.controller.config import OperatorConfig
    from modeldeploy.controller.render import render_objects

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        parsed = parse(yaml.safe_load(text))
        config = OperatorConfig.from_env(artifact_store=artifact_store)
    except (OSError, yaml.YAMLError, InvalidSpecError, ValueError) as err:
        typer.echo(f"{file}: {err}", err=True)
        raise typer.Exit(code=ExitCode.INVALID) from err
    objects = render_objects(parsed, config, artifact_uri)
    typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


# --- rollout control ------------------------------------------------------------------------------

NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", help="Namespace of the ModelDeployment; default: the context's."
    ),
]
KubeconfigOption = Annotated[
    Path | None, typer.Option(help="Default: in-cluster credentials, else $KUBECONFIG.")
]
ContextOption = Annotated[
    str | None, typer.Option("--context", help="The kubeconfig context; default: the current.")
]
NameArgument = Annotated[str, typer.Argument(help="The ModelDeployment's name.")]


class Output(StrEnum):
    """How ``status`` and ``list`` print: for people, or whole objects for tools."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (for people), json or yaml (the objects).")
]
WatchOption = Annotated[bool, typer.Option("--watch", "-w", help="Print again at every change.")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(help="With --watch: give up after this many seconds (exit 1)."),
]


def _fail(verb: str, err: Exception) -> NoReturn:
    typer.echo(f"modeldeploy {verb}: {err}", err=True)
    raise typer.Exit(code=ExitCode.FAILURE) from err


def _print_objects(
    objects: list[dict[str, Any]], output: Output, single: bool, first: bool = True
) -> None:
    """json/yaml of one object, or of a kubectl-style ``List``. A watch prints one document per
    change: YAML ones after the first are separated by ``---``, JSON ones simply follow."""
    doc: Any = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects}
    if output == Output.JSON:
        typer.echo(json.dumps(doc, indent=2))
        return
    if not first:
        typer.echo("---")
    typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


def _rollout_command(
    verb: str,
    name: str,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    action: str | None = None,
) -> None:
    """Apply ``action``'s annotations (default: the verb's) and print the result."""
    from modeldeploy.rollout_control import RolloutControlError, describe, request

    try:
        body = request(action or verb, name, namespace, kubeconfig, context)
    except RolloutControlError as err:
        _fail(verb, err)
    typer.echo(describe(body))


@app.command()
def status(name: NameArgument, namespace: NamespaceOption = None,
           kubeconfig: KubeconfigOption = None, context: ContextOption = None,
           output: OutputOption = Output.TABLE, watch: WatchOption = False,
           timeout: TimeoutOption = None) -> None:  # fmt: skip
    """Print a ModelDeployment's rollout: phase, step, weights, the last analysis numbers.

    With --watch, print at every change until the rollout is finished: exit 0 when it is Ready
    with no rollout in flight, 1 when it rolled back, was aborted or failed (or on --timeout).
    A paused or inconclusive rollout waits for a person; the watch waits with it.
    """
    from modeldeploy.rollout_control import (
        RolloutControlError,
        describe,
        finished,
        request,
    )
    from modeldeploy.rollout_control import (
        watch as watch_changes,
    )

    def show(body: dict[str, Any], first: bool = False) -> None:
        if output == Output.TABLE:
            typer.echo(describe(body))
        else:
            _print_objects([body], output, single=True, first=first)

    try:
        body = request("status", name, namespace, kubeconfig, context)
        show(body, first=True)
        if not watch:
            return
        namespace = body["metadata"]["namespace"]
        done, healthy = finished(body)
        events = watch_changes(namespace, False, kubeconfig, context, name,
                               body["metadata"]["resourceVersion"], timeout)  # fmt: skip
        last = describe(body)
        while not done:
            event = next(events, None)
            if event is None:
                typer.echo(f"modeldeploy status: not finished within {timeout}s", err=True)
                raise typer.Exit(code=ExitCode.FAILURE)
            kind, body = event
            if kind == "DELETED":
                typer.echo(f"modeldeploy status: {namespace}/{name} was deleted", err=True)
                raise typer.Exit(code=ExitCode.FAILURE)
            text = describe(body)
            if text != last:  # status writes that change nothing a person sees are skipped
                if output == Output.TABLE:
                    typer.echo("")
                show(body)
                last = text
            done, healthy = finished(body)
    except RolloutControlError as err:
        _fail("status", err)
    if not healthy:
        raise typer.Exit(code=ExitCode.FAILURE)


@app.command("list")
def list_(namespace: NamespaceOption = None,
          all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A",
                                                       help="Every namespace.")] = False,
          kubeconfig: KubeconfigOption = None, context: ContextOption = None,
          output: OutputOption = Output.TABLE, watch: WatchOption = False,
          timeout: TimeoutOption = None) -> None:  # fmt: skip
    """List ModelDeployments: ready, reason, rollout phase and step, traffic, URL.

    With --watch, then print each change as it happens, as `kubectl get -w` does, until
    interrupted (or --timeout, exit 0).
    """
    from modeldeploy.rollout_control import RolloutControlError, list_deployments
    from modeldeploy.rollout_control import watch as watch_changes

    try:
        items, version = list_deployments(namespace, all_namespaces, kubeconfig, context)
        if output == Output.TABLE:
            _print_table(items, all_namespaces, header=True)
        else:
            _print_objects(items, output, single=False)
        if not watch:
            return
        for _kind, body in watch_changes(namespace, all_namespaces, kubeconfig, context,
                                         None, version, timeout):  # fmt: skip
            if output == Output.TABLE:
                _print_table([body], all_namespaces, header=False)
            else:
                _print_objects([body], output, single=True, first=False)
    except RolloutControlError as err:
        _fail("list", err)


_COLUMNS = ("namespace", "name", "ready", "reason", "phase", "step", "traffic", "url")


def _print_table(items: list[dict[str, Any]], all_namespaces: bool, header: bool) -> None:
    """kubectl's look: upper-case headers, no borders, columns as wide as their values."""
    from rich.table import Table

    from modeldeploy.rollout_control import plain_text, summary_row

    if not items and header:
        typer.echo("No ModelDeployments found.", err=True)
        return
    columns = _COLUMNS if all_namespaces else _COLUMNS[1:]
    table = Table(box=None, show_header=header, pad_edge=False, padding=(0, 3, 0, 0))
    for column in columns:
        table.add_column(column.upper(), no_wrap=True)
    for item in items:
        row = summary_row(item)
        table.add_row(*(row[c] or "-" for c in columns))
    typer.echo(plain_text(table))


@app.command()
def promote(name: NameArgument, namespace: NamespaceOption = None,
            kubeconfig: KubeconfigOption = None, context: ContextOption = None,
            full: Annotated[bool, typer.Option("--full", help="Skip every step left and "
                                               "promote now.")] = False) -> None:  # fmt: skip
    """End the current step now and go on to the next (promotion after the last), as Argo
    Rollouts' promote; --full promotes now. Annotation modeldeploy.io/promote=step|full."""
    _rollout_command("promote", name, namespace, kubeconfig, context,
                     action="promote-full" if full else None)  # fmt: skip


@app.command()
def abort(name: NameArgument, namespace: NamespaceOption = None,
          kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:  # fmt: skip
    """Send all traffic back to stable and fail the rollout (annotation modeldeploy.io/abort)."""
    _rollout_command("abort", name, namespace, kubeconfig, context)


@app.command()
def retry(name: NameArgument, namespace: NamespaceOption = None,
          kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:  # fmt: skip
    """Roll a failed or aborted revision out again from the first step, or retry an inconclusive
    step (annotation modeldeploy.io/retry)."""
    _rollout_command("retry", name, namespace, kubeconfig, context)


@app.command()
def pause(name: NameArgument, namespace: NamespaceOption = None,
          kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:  # fmt: skip
    """Hold the rollout at its step and weights (annotation modeldeploy.io/pause=true)."""
    _rollout_command("pause", name, namespace, kubeconfig, context)


@app.command()
def resume(name: NameArgument, namespace: NamespaceOption = None,
           kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:  # fmt: skip
    """Resume a paused rollout; the current step's pause starts again."""
    _rollout_command("resume", name, namespace, kubeconfig, context)
