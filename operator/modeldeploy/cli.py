"""The ``modeldeploy`` command line. Works without a cluster."""

from __future__ import annotations

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
def crd(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the Markdown field reference instead.")
    ] = False,
) -> None:
    """Print the ModelDeployment CustomResourceDefinition (what `make crds` writes)."""
    typer.echo(render_markdown() if reference else render_yaml(), nl=False)
