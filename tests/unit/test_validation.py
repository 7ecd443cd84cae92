"""``modeldeploy validate`` and the Python halves of the API rules, without a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modeldeploy.api import ModelDeployment, duration_seconds
from modeldeploy.api.metric_names import metric_names
from modeldeploy.api.validation import InvalidSpecError, parse, validate_document
from tests.invalid_specs import CASES, InvalidCase, valid_doc

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_there_are_examples_of_each_kind() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"resnet50-gpu-canary", "minilm-cpu-int8", "fraud-standard-onnx"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_validates(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert validate_document(doc) == []
    deployment = parse(doc)
    assert deployment.metadata.name == doc["metadata"]["name"]


@pytest.mark.parametrize("path", [*EXAMPLES, REPO / "examples" / "quickstart" / "digits.yaml"],
                         ids=lambda p: p.stem)  # fmt: skip
def test_every_example_states_its_prerequisites_in_its_header(path: Path) -> None:
    header = path.read_text().split("\napiVersion:", 1)[0]
    assert "Prerequisites" in header
    namespace = yaml.safe_load(path.read_text().replace("$BUCKET", "b"))["metadata"]["namespace"]
    assert namespace in header  # the namespace it needs is named, or created by its folder


def test_the_minimal_spec_gets_every_default() -> None:
    spec = parse(valid_doc()).spec
    assert spec.optimization.precision == "fp32"
    assert spec.optimization.opset == 17
    assert spec.optimization.parity.atol == pytest.approx(1e-3)
    assert spec.serving.runtime == "modeldeploy-onnx"
    assert spec.serving.deployment_mode == "Standard"
    assert spec.serving.resources.gpu == 0
    assert spec.serving.scaling.metric == "cpu"
    assert [s.weight for s in spec.rollout.steps] == [10, 50]
    assert spec.rollout.auto_rollback is True
    assert spec.model.postprocessing.type == "none"


def test_manifest_round_trips_with_camel_case_names() -> None:
    deployment = parse(yaml.safe_load(EXAMPLES[0].read_text()))
    manifest = deployment.to_manifest()
    assert "deploymentMode" in manifest["spec"]["serving"]
    assert "deployment_mode" not in manifest["spec"]["serving"]
    assert ModelDeployment.model_validate(manifest) == deployment


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_at_its_field(case: InvalidCase) -> None:
    problems = validate_document(case.doc())
    assert problems, f"{case.id} was accepted"
    matching = [p for p in problems if p.path == case.path]
    assert matching, f"no problem at {case.path}; got {[str(p) for p in problems]}"
    assert any(case.message in p.message for p in matching), [str(p) for p in matching]


def test_at_least_fifteen_distinct_invalid_specs() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 15
    assert len({(c.path, c.message) for c in CASES}) >= 15


def test_parse_raises_with_every_problem() -> None:
    doc = valid_doc()
    doc["spec"]["rollout"] = {"steps": [{"weight": 30}, {"weight": 20}, {"weight": 10}]}
    with pytest.raises(InvalidSpecError) as err:
        parse(doc)
    assert [str(p) for p in err.value.problems] == [
        "spec.rollout.steps[1].weight: must be greater than 30",
        "spec.rollout.steps[2].weight: must be greater than 20",
    ]


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "apiVersion"),
        ({"apiVersion": "modeldeploy.io/v1alpha1", "kind": "Model"}, "kind"),
        (["not", "a", "mapping"], "<document>"),
    ],
)
def test_documents_that_are_not_model_deployments(doc: object, path: str) -> None:
    problems = validate_document(doc)
    assert [p.path for p in problems] == [path]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2ms", 0.002), ("1m30s", 90.0), ("1.5h", 5400.0), ("250us", 0.00025)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_cli_accepts_the_examples() -> None:
    result = run_cli("validate", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("is valid") == len(EXAMPLES)


def test_cli_prints_field_paths_and_exits_3_for_an_invalid_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    docs = [c.doc() for c in CASES if c.id in {"weights-not-increasing", "gpu-type-needs-gpu"}]
    bad.write_text(yaml.safe_dump_all(docs))
    result = run_cli("validate", str(bad))
    assert result.returncode == 3
    assert f"{bad}[0]: spec.rollout.steps[2].weight: must be greater than 50" in result.stderr
    assert f"{bad}[1]: spec.serving.resources.gpuType: gpuType needs gpu > 0" in result.stderr


def test_cli_reads_stdin_and_reports_unreadable_files(tmp_path: Path) -> None:
    ok = run_cli("validate", "-", stdin=yaml.safe_dump(valid_doc()))
    assert ok.returncode == 0
    assert "<stdin>: ModelDeployment classifier is valid" in ok.stdout
    missing = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 3
    assert "cannot read" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert run_cli("validate", str(broken)).returncode == 3


def test_a_usage_error_exits_2_and_never_reads_as_an_invalid_spec(tmp_path: Path) -> None:
    no_file = run_cli("validate")
    assert no_file.returncode == 2
    assert "Missing argument" in no_file.stderr
    unknown = run_cli("validate", "--strictly", str(tmp_path / "x.yaml"))
    assert unknown.returncode == 2
    assert "No such option" in unknown.stderr


def test_cli_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.strip()[0].isdigit()


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ('sum(increase(modeldeploy_requests_total{outcome="error",r="{{canary}}"}[{{window}}]))',
         ["modeldeploy_requests_total"]),
        ("1000 * histogram_quantile(0.99, sum by (le) (rate(a_bucket{x='y'}[5m])))", ["a_bucket"]),
        ("abs(avg(m1{s=\"mean\"}) - avg(m2)) / on(pod) group_left(node) up", ["m1", "m2", "up"]),
        ('x offset 5m or vector(0) and bool 1e3', ["x"]),
    ],
)  # fmt: skip
def test_metric_names_are_read_out_of_promql(query: str, names: list[str]) -> None:
    assert metric_names(query) == names


def test_a_query_on_a_metric_the_runtime_does_not_export_is_refused_where_it_is() -> None:
    doc = valid_doc()
    doc["spec"]["rollout"] = {"analysis": {"queries": [
        {"name": "ok", "query": "avg(modeldeploy_input_mean)", "max": 1},
        {"name": "gone", "query": "avg(modeldeploy_input_median{isvc='{{canary}}'})", "max": 1},
    ]}}  # fmt: skip
    problems = validate_document(doc)
    assert [p.path for p in problems] == ["spec.rollout.analysis.queries[1].query"]
    assert "modeldeploy_input_median is not exported" in problems[0].message
    doc["spec"]["serving"] = {"runtime": "kserve-tritonserver"}
    problems = validate_document(doc)
    assert len(problems) == 2
    assert all("exported by the modeldeploy-onnx runtime only" in p.message for p in problems)


def test_cli_skips_other_kinds_in_a_bundle_and_still_judges_the_modeldeployments(
    tmp_path: Path,
) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    bad = valid_doc()
    bad["spec"]["serving"] = {"resources": {"gpuType": "NVIDIA-A100"}}
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(yaml.safe_dump_all([namespace, valid_doc()]))
    ok = run_cli("validate", str(bundle))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        f"{bundle}[0]: skipped Namespace demo (not a ModelDeployment)",
        f"{bundle}[1]: ModelDeployment classifier is valid",
    ]
    bundle.write_text(yaml.safe_dump_all([namespace, bad]))
    refused = run_cli("validate", str(bundle))
    assert refused.returncode == 3
    assert f"{bundle}[1]: spec.serving.resources.gpuType" in refused.stderr
    only = tmp_path / "only.yaml"
    only.write_text(yaml.safe_dump(namespace))
    none = run_cli("validate", str(only))
    assert none.returncode == 3
    assert none.stderr.strip() == f"{only}: no ModelDeployment"
    # Something that says nothing of its kind is still judged (and refused), never skipped.
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"metadata": {"name": "x"}}))
    assert run_cli("validate", str(unknown)).returncode == 3


def test_without_the_kubernetes_client_a_cluster_verb_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from modeldeploy.cli import app\n"
        "app(['status', 'digits'], prog_name='modeldeploy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "modeldeploy status: this command needs the Kubernetes client: "
        "pip install 'modeldeploy[cli]'"
    )
