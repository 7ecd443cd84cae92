"""The ModelDeployment CRD in a real kube-apiserver: validation, CEL, defaults, status, columns."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from modeldeploy.api import GROUP, PLURAL, VERSION
from modeldeploy.api.validation import parse
from tests.cluster.kube import message_of, status_of
from tests.invalid_specs import CASES, InvalidCase, valid_doc
from tests.unit.test_validation import EXAMPLES


def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(api_client: client.ApiClient, namespace: str, doc: dict[str, Any], **kw: Any) -> Any:
    return custom(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, doc, field_validation="Strict", **kw
    )


def refusal(api_client: client.ApiClient, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as err:
        create(api_client, namespace, doc, dry_run="All")
    assert err.value.status in (400, 422), err.value.body
    return status_of(err.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_apiserver_refuses_what_validate_refuses(
    api_client: client.ApiClient, namespace: str, case: InvalidCase
) -> None:
    body = refusal(api_client, namespace, case.doc())
    causes = body.get("details", {}).get("causes", [])
    if case.api_field:
        matching = [c for c in causes if c.get("field") == case.api_field]
        assert matching, f"no cause at {case.api_field}: {body['message']}"
        assert any(case.api_message in c["message"] for c in matching), body["message"]
    else:
        assert case.api_message in body["message"]


def test_valid_object_is_stored_with_the_same_defaults_as_the_models(
    api_client: client.ApiClient, namespace: str
) -> None:
    stored = create(api_client, namespace, valid_doc())
    expected = parse(valid_doc()).to_manifest()["spec"]
    assert stored["spec"] == expected
    assert stored["metadata"]["generation"] == 1


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_are_accepted_and_keep_their_values(
    api_client: client.ApiClient, namespace: str, path: Any
) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = namespace
    stored = create(api_client, namespace, doc)
    assert stored["spec"] == parse(doc).to_manifest()["spec"]


def test_status_is_written_only_through_the_status_subresource(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = custom(api_client)
    create(api_client, namespace, valid_doc())
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Serving",
                "message": "artifact sha256:ab12 serves",
                "lastTransitionTime": "2026-11-23T10:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "traffic": {"stable": 90, "canary": 10, "split": "90/10"},
        "url": "http://classifier.test.example.com",
    }
    patched = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "classifier", {"status": status}
    )
    assert patched["status"]["traffic"]["split"] == "90/10"
    assert patched["metadata"]["generation"] == 1  # status writes do not bump the generation

    # A status sent to the main resource is ignored, and a spec change bumps the generation.
    after = api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "classifier",
        {"spec": {"optimization": {"precision": "fp16"}}, "status": {"url": "http://elsewhere"}},
    )
    assert after["status"]["url"] == "http://classifier.test.example.com"
    assert after["metadata"]["generation"] == 2

    # The status schema is enforced too.
    bad = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "Maybe",
                    "reason": "X",
                    "lastTransitionTime": "2026-11-23T10:00:00Z",
                }
            ]
        }
    }
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "classifier", bad
        )
    assert 'Unsupported value: "Maybe"' in message_of(err.value)


def test_update_that_breaks_a_rule_is_refused_and_the_stored_object_is_untouched(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = custom(api_client)
    create(api_client, namespace, valid_doc())
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "classifier",
            {"spec": {"rollout": {"steps": [{"weight": 60}, {"weight": 40}]}}},
        )
    assert "step weights must be strictly increasing" in message_of(err.value)
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "classifier")
    assert [s["weight"] for s in stored["spec"]["rollout"]["steps"]] == [10, 50]
    assert stored["metadata"]["generation"] == 1


def test_kubectl_get_mdep_prints_our_columns(control_plane: Any, namespace: str) -> None:
    doc = valid_doc("columns")
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["optimization"] = {"precision": "fp16"}
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    control_plane.kubectl(
        "patch",
        "mdep",
        "columns",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "traffic": {"stable": 75, "canary": 25, "split": "75/25"},
                    "url": "http://columns.example.com",
                    # stable still serves fp32 while the fp16 spec's canary rolls out
                    "precision": "fp32",
                    "rollout": {"phase": "Progressing", "step": 1},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Serving",
                            "lastTransitionTime": "2026-11-23T10:00:00Z",
                        }
                    ],
                }
            }
        ),
    )
    table = control_plane.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "READY", "REASON", "PRECISION", "TRAFFIC", "PHASE", "URL", "AGE"
    ]  # fmt: skip
    assert table[1].split()[:7] == [
        "columns",
        "True",
        "Serving",
        "fp32",
        "75/25",
        "Progressing",
        "http://columns.example.com",
    ]
    # The short name and the category both reach it.
    assert "columns" in control_plane.kubectl("get", "modeldeploy", "-n", namespace).stdout
