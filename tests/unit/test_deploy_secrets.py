"""Baton on Kubernetes (the Helm chart and deploy/kubernetes) hands each pod only the secrets it
uses: the API its own Secret's keys with the registry's pull password, never the push one; every
worker the push password. What each uses is what the embedded stack gives the same process
(`baton.local.stack.secret_variables`) for the shipped config."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from activities import ACTIVITIES
from baton.config import load_config, reader_warnings
from baton.local.stack import FLUX_WEBHOOK_SECRET, secret_variables
from baton.tools import PROJECT_ROOT, find_tool
from tests.unit.test_helm_chart import CONFIG, REQUIRED, render, workloads

SECRETS = secret_variables(load_config(CONFIG))
(PUSH,) = SECRETS["registry"]
(PULL,) = SECRETS["registry_pull"]
API = SECRETS["forge"] | SECRETS["webhook"] | SECRETS["registry_pull"]
WORKERS = SECRETS["registry"] | SECRETS["forge"] | SECRETS["webhook"] | SECRETS["worker"]


def secret_references(deployment: dict) -> dict[str, set[tuple[str, str]]]:
    """Each container's (variable, Secret/key) pairs: every way its pod spec reaches a Secret
    (a whole Secret, through envFrom or a volume without `items`, is key `*`)."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {
        (f"volume {v['name']}", f"{v['secret']['secretName']}/{item['key']}")
        for v in pod.get("volumes", [])
        if "secret" in v
        for item in v["secret"].get("items") or [{"key": "*"}]
    }
    found = {}
    for container in pod["containers"]:
        refs = set(volumes)
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                refs.add(("envFrom", f"{source['secretRef']['name']}/*"))
        for variable in container.get("env", []):
            if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                refs.add((variable["name"], f"{ref['name']}/{ref['key']}"))
        found[f"{deployment['metadata']['name']}/{container['name']}"] = refs
    return found


def kustomized() -> list[dict]:
    out = subprocess.run(
        [find_tool("kubectl"), "kustomize", str(PROJECT_ROOT / "deploy" / "kubernetes")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_component(objects: list[dict]) -> tuple[dict[str, set], dict[str, set]]:
    """The API's containers' secret references and the workers', by container."""
    api, workers = {}, {}
    for deployment in workloads(objects):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        (api if component == "api" else workers).update(secret_references(deployment))
    assert api
    assert len(workers) == len(ACTIVITIES)
    return api, workers


@pytest.fixture(params=["helm", "kustomize"])
def shipped(request: pytest.FixtureRequest) -> list[dict]:
    """The objects the chart renders (with the shipped config) or deploy/kubernetes builds."""
    return render(*REQUIRED) if request.param == "helm" else kustomized()


def test_the_shipped_config_gives_readers_a_pull_credential() -> None:
    assert reader_warnings(load_config(CONFIG)) == []
    assert PUSH != PULL


def test_the_api_never_references_the_push_password_and_every_worker_does(
    shipped: list[dict],
) -> None:
    api, workers = by_component(shipped)
    for container, refs in api.items():
        # The token file holds digests, no secret: its own Secret, its one key (deploy/kubernetes).
        refs = refs - {("volume tokens", "baton-api-tokens/tokens")}
        assert {variable for variable, _ in refs} == API - {FLUX_WEBHOOK_SECRET}, container
        assert all(key.split("/")[1] == variable for variable, key in refs), container
        assert not [key for _, key in refs if key.endswith(("/*", f"/{PUSH}"))], container
        assert {secret.split("/")[0] for _, secret in refs} == {"baton-api"}
    for container, refs in workers.items():
        assert (PUSH, f"baton-workers/{PUSH}") in refs, container
        assert PULL not in {variable for variable, _ in refs}, container
        assert {variable for variable, _ in refs} <= WORKERS, container


def test_a_worker_may_take_a_secret_of_its_own() -> None:
    objects = render(
        *REQUIRED,
        "--set",
        "workers.build.secrets.existingSecret=baton-build",
        "--set",
        f"workers.build.secrets.keys={{{PUSH},NPM_TOKEN}}",
    )
    api, workers = by_component(objects)
    assert workers["baton-worker-build/worker"] == {
        (PUSH, f"baton-build/{PUSH}"),
        ("NPM_TOKEN", "baton-build/NPM_TOKEN"),
    }
    for name in ("baton-worker-deploy/worker", "baton-worker-workflows/worker"):
        assert {secret.split("/")[0] for _, secret in workers[name]} == {"baton-workers"}
    assert {secret.split("/")[0] for refs in api.values() for _, secret in refs} == {"baton-api"}
