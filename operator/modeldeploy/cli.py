"""The ``modeldeploy`` command line. Works without a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from modeldeploy import __version__
from modeldeploy.api.crd import render_yaml
from modeldeploy.api.reference import render_markdown
from modeldeploy.api.validation import validate_document

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

    Exits 0 when every document is valid, 2 when any is not.
    """
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
        if not docs:
            typer.echo(f"{name}: no documents", err=True)
            invalid += 1
        for index, doc in enumerate(docs):
            where = name if len(docs) == 1 else f"{name}[{index}]"
            problems = validate_document(doc)
            if problems:
                invalid += 1
                for problem in problems:
                    typer.echo(f"{where}: {problem}", err=True)
            else:
                label = doc.get("metadata", {}).get("name", "?")
                typer.echo(f"{where}: ModelDeployment {label} is valid")
    if invalid:
        raise typer.Exit(code=2)


@app.command()
def stage(
    deployment: Annotated[
        Path, typer.Argument(help="A ModelDeployment YAML/JSON file; '-' reads stdin.")
    ],
    dest: Annotated[
        str,
        typer.Option(
            "--dest",
            envvar="MODELDEPLOY_ARTIFACT_STORE",
            help="Artifact store: s3://bucket/prefix, pvc://claim/prefix, file:///path or a path.",
        ),
    ],
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
) -> None:
    """Fetch, convert, optimize, verify and store the model of a ModelDeployment.

    Prints one JSON summary on stdout. Exits 0 on success (a cache hit included), 2 for an
    invalid spec, and 10-18 for a staging failure (see docs/staging.md).
    """
    from modeldeploy.api.validation import InvalidSpecError, parse
    from modeldeploy.staging.errors import StagingError
    from modeldeploy.staging.stage import stage as run_stage
    from modeldeploy.staging.stage import summary_for_error, write_termination_log

    try:
        text = sys.stdin.read() if str(deployment) == "-" else deployment.read_text()
        parsed = parse(yaml.safe_load(text))
    except (OSError, yaml.YAMLError, InvalidSpecError) as err:
        summary = {"status": "Failed", "reason": "InvalidSpec", "message": str(err), "exitCode": 2}
        typer.echo(json.dumps(summary))
        write_termination_log(summary, termination_log)
        raise typer.Exit(code=2) from err
    try:
        result = run_stage(parsed, dest, code_dir=code_dir)
    except StagingError as err:
        summary = summary_for_error(err)
        typer.echo(json.dumps(summary))
        write_termination_log(summary, termination_log)
        raise typer.Exit(code=err.exit_code) from err
    summary = result.to_json()
    typer.echo(json.dumps(summary))
    write_termination_log(summary, termination_log)


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
    threads: Annotated[
        int | None,
        typer.Option(help="ONNX Runtime intra-op threads; default: the container's CPU limit."),
    ] = None,
) -> None:
    """Serve a staged model over the Open Inference Protocol v2 (REST and gRPC)."""
    from modeldeploy.runtime.artifact import ArtifactError
    from modeldeploy.runtime.requests import Limits
    from modeldeploy.runtime.server import serve as run_server

    try:
        run_server(
            path,
            http_port=http_port,
            grpc_port=grpc_port,
            max_batch_size=max_batch_size,
            max_queue_delay=None if max_queue_delay_ms is None else max_queue_delay_ms / 1000,
            limits=Limits(max_bytes=max_request_kb << 10),
            threads=threads,
            name=model_name,
        )
    except ArtifactError as err:
        typer.echo(f"cannot serve: {err}", err=True)
        raise typer.Exit(code=2) from err


@app.command()
def crd(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the Markdown field reference instead.")
    ] = False,
) -> None:
    """Print the ModelDeployment CustomResourceDefinition (what `make crds` writes)."""
    typer.echo(render_markdown() if reference else render_yaml(), nl=False)
