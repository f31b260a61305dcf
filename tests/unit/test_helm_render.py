"""Helm renders like an install, pinned to the image CI built, failing fast in helm's words.

Charts are written here for each behaviour (dependencies, crds/, hooks, capability guards,
`required`), or made by running `helm create`. Cases from the shared case book keep their number.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import context as activity_context
from activities import deploy
from activities.context import Context
from activities.errors import application_error
from baton.artifacts import (
    ArtifactError,
    ArtifactStore,
    DependencyBuildFailed,
    build_dependencies,
    package_chart,
    publish_artifact,
)
from baton.checks import helm_lint, render_and_validate
from baton.config import AppConfig, ImageValues, KubernetesConfig, parse_config
from baton.errors import ConfigurationError
from baton.logs import LogStore
from baton.models import Artifact, CheckResult, PinnedImage
from baton.registry import Registry
from baton.render import HelmRenderer, ImageNotPinned, RenderFailed, split_objects
from baton.settings import Settings
from baton.temporal import TaskQueues
from baton.tools import error_line, find_tool
from tests.fakes.records import fake_artifact, fake_rendered
from tests.fixtures.charts import DEPLOYMENT
from tests.fixtures.ports import closed_port
from tests.fixtures.rollouts import prod, rollout_of
from workflows.rollout import EnvironmentRollout, texts

SAMPLE_CHART = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "chart"
DIGEST = "sha256:" + "5" * 64
APP = "{name: web, repo: web, image: web, chart: chart}"


def pinned(repository: str, tag: str | None = None) -> PinnedImage:
    return PinnedImage(repository=repository, digest=DIGEST, tag=tag)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def chart(root: Path, name: str, templates: dict[str, str], **extra: str) -> Path:
    """A chart `name` under `root` whose container runs `image.repository@image.digest`."""
    files = {
        "Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n",
        "values.yaml": "image: {repository: app, digest: ''}\n",
        **{f"templates/{k}": v for k, v in templates.items()},
        **extra,
    }
    return write(root, files)


@pytest.fixture
def logs(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def ci_check(
    chart_dir: Path, logs: LogStore, image: PinnedImage | None = None, *, release: str = "web"
) -> CheckResult:
    """CI's rendered check of the chart, its image pinned (by default 127.0.0.1:5000/app)."""
    return render_and_validate(
        "rendered",
        HelmRenderer(chart_dir),
        release=release,
        namespace="ci",
        image=image or pinned("127.0.0.1:5000/app"),
        logs=logs,
    )


# --- Dependencies (case 12) -------------------------------------------------------------------


def monorepo(root: Path) -> Path:
    """Case 12: repo/app/chart depends on the library file://../../common; charts/ not committed."""
    write(
        root / "common",
        {
            "Chart.yaml": "apiVersion: v2\nname: common\ntype: library\nversion: 0.1.0\n",
            "templates/_labels.tpl": '{{- define "common.labels" -}}\n'
            "app.kubernetes.io/name: {{ .Chart.Name }}\n"
            "app.kubernetes.io/instance: {{ .Release.Name }}\n{{- end -}}\n",
        },
    )
    return chart(
        root / "app" / "chart",
        "web",
        {
            "deployment.yaml": DEPLOYMENT.replace(
                "  name: {{ .Release.Name }}\n",
                '  name: {{ .Release.Name }}\n  labels: {{- include "common.labels" . | nindent 4 }}\n',
                1,
            )
        },
        **{
            "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
            "  - name: common\n    version: 0.1.0\n    repository: file://../../common\n"
        },
    )


def test_case_12_file_dependencies_are_built_before_lint_render_and_package(tmp_path, logs):
    web = monorepo(tmp_path / "repo")
    image = pinned("127.0.0.1:5000/web")

    lint = helm_lint(web, logs=logs)
    rendered = ci_check(web, logs, image)
    package = package_chart(web, "0.1.0-g" + "a" * 12, "a" * 12, tmp_path / "out")

    assert lint.passed, lint.summary
    assert rendered.passed, rendered.summary
    labels = split_objects(HelmRenderer(web).render("web", "ci", image=image))["Deployment/web"]
    assert labels["metadata"]["labels"]["app.kubernetes.io/name"] == "web"
    listed = subprocess.run(
        ["tar", "-tzf", str(package)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "web/charts/common/templates/_labels.tpl" in listed
    # The checkout keeps its own files: the lock helm writes (with its build time) is removed.
    assert not (web / "Chart.lock").exists()
    assert "web/Chart.lock" not in listed


def test_a_built_dependency_is_not_built_again(tmp_path):
    web = monorepo(tmp_path / "repo")
    build_dependencies(web)
    built = (web / "charts" / "common-0.1.0.tgz").stat().st_mtime_ns

    build_dependencies(web)

    assert (web / "charts" / "common-0.1.0.tgz").stat().st_mtime_ns == built


def test_a_missing_dependency_fails_at_once_with_helms_words(tmp_path, logs):
    web = monorepo(tmp_path / "repo")
    shutil.rmtree(tmp_path / "repo" / "common")

    with pytest.raises(RenderFailed) as failed:
        HelmRenderer(web).render("web", "ci")
    lint = helm_lint(web, logs=logs)

    assert "helm dependency build of" in str(failed.value)
    assert "common" in str(failed.value) and "--debug" not in str(failed.value)
    assert application_error(failed.value).non_retryable
    assert not lint.passed and lint.summary.startswith("helm dependency build of")


def test_a_dependency_from_a_repository_baton_does_not_reach_must_be_vendored(tmp_path):
    web = chart(
        tmp_path / "web",
        "web",
        {"deployment.yaml": DEPLOYMENT},
        **{
            "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
            "  - name: redis\n    version: 1.2.3\n"
            "    repository: https://charts.example.test/stable\n"
        },
    )

    with pytest.raises(DependencyBuildFailed) as failed:
        build_dependencies(web)

    assert "dependency redis comes from https://charts.example.test/stable" in str(failed.value)
    assert "vendor it in charts/" in str(failed.value)
    assert isinstance(failed.value, ConfigurationError)


def library(root: Path) -> Path:
    """A library chart `lib` defining `lib.name`."""
    return write(
        root / "lib",
        {
            "Chart.yaml": "apiVersion: v2\nname: lib\ntype: library\nversion: 0.1.0\n",
            "templates/_name.tpl": '{{- define "lib.name" -}}web-{{ .Release.Name }}{{- end -}}\n',
        },
    )


def using_library(root: Path, repository: str, version: str) -> Path:
    """A chart `web` naming its Deployment with `lib.name`, from `lib` at `repository`."""
    return chart(
        root / "web",
        "web",
        {
            "deployment.yaml": DEPLOYMENT.replace(
                "{{ .Release.Name }}", '{{ include "lib.name" . }}'
            )
        },
        **{
            "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
            f"  - name: lib\n    version: {version}\n    repository: {repository}\n"
        },
    )


@pytest.mark.docker
def test_oci_dependencies_come_from_the_configured_registry(registry, tmp_path):
    commit = secrets.token_hex(20)
    with Registry(registry.url, registry.username, registry.password) as reg:
        lib = publish_artifact(
            "lib",
            commit,
            library(tmp_path),
            reg.repository("lib"),
            DIGEST,
            reg,
            store=ArtifactStore(tmp_path / "artifacts"),
        )
        web = using_library(tmp_path, f"oci://{reg.host}/charts", lib.chart_version)

        objects = split_objects(
            HelmRenderer(web, registry=reg).render("1", "ci", image=pinned("127.0.0.1:5000/app"))
        )

    assert list(objects) == ["Deployment/web-1"]


def test_an_unreachable_registry_is_retried(tmp_path):
    unreachable = Registry(f"http://127.0.0.1:{closed_port()}")
    web = using_library(tmp_path, f"oci://{unreachable.host}/charts", "0.1.0")

    with pytest.raises(ArtifactError, match="the registry did not answer") as failed:
        HelmRenderer(web, registry=unreachable).render("1", "ci")

    assert not application_error(failed.value).non_retryable


# --- What an install creates: CRDs (case 13), hooks --------------------------------------------


def test_case_13_the_charts_crds_are_rendered_first(tmp_path):
    crd = (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata:\n  name: dnsendpoints.externaldns.k8s.io\nspec:\n"
        "  group: externaldns.k8s.io\n  names: {kind: DNSEndpoint, listKind: DNSEndpointList, "
        "plural: dnsendpoints, singular: dnsendpoint}\n  scope: Namespaced\n  versions:\n"
        "    - name: v1alpha1\n      served: true\n      storage: true\n      schema:\n"
        "        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n"
    )
    endpoint = (
        "apiVersion: externaldns.k8s.io/v1alpha1\nkind: DNSEndpoint\n"
        "metadata:\n  name: {{ .Release.Name }}\nspec:\n  endpoints:\n"
        "    - {dnsName: app.example.test, recordType: A, targets: [192.0.2.10]}\n"
    )
    dnsapp = chart(
        tmp_path / "dnsapp",
        "dnsapp",
        {"deployment.yaml": DEPLOYMENT, "dnsendpoint.yaml": endpoint},
        **{"crds/dnsendpoints.yaml": crd},
    )

    objects = split_objects(
        HelmRenderer(dnsapp).render("dnsapp", "prod", image=pinned("127.0.0.1:5000/dnsapp"))
    )

    crd_key = "CustomResourceDefinition/dnsendpoints.externaldns.k8s.io"
    assert crd_key in objects
    assert next(iter(objects)) == crd_key


HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-%(name)s
  annotations: {"helm.sh/hook": "%(hook)s"}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - {name: run, image: "busybox:1.36"}
"""


def test_hooks_an_install_does_not_run_are_left_out_and_said_why(tmp_path):
    hooks = {
        "connection": "test",
        "cleanup": "pre-delete",
        "undo": "post-rollback",
        "migrate": "pre-install,pre-upgrade",
        "notify": "post-install,post-delete",
    }
    web = chart(
        tmp_path / "web",
        "web",
        {
            "deployment.yaml": DEPLOYMENT,
            **{f"{name}.yaml": HOOK % {"name": name, "hook": h} for name, h in hooks.items()},
        },
    )

    render = HelmRenderer(web).template("web", "prod", image=pinned("127.0.0.1:5000/app"))

    kept = split_objects(render.manifests)
    assert sorted(kept) == ["Deployment/web", "Job/web-migrate", "Job/web-notify"]
    reasons = {o.key: o.reason for o in render.omitted}
    assert reasons == {
        "Job/web-connection": "a test hook: `helm test` runs it, an install does not",
        "Job/web-cleanup": "a delete hook: it runs only when the release is uninstalled",
        "Job/web-undo": "a rollback hook: it runs only on `helm rollback`, and Baton rolls back "
        "by reverting the GitOps change",
    }
    # The GitOps PR says what was left out and why.
    rollout = rollout_of(prod())
    rendered = fake_rendered(rollout).model_copy(update={"omitted": render.omitted})
    body = texts.deploy_body(rollout, "rollout/web/prod", rendered)
    assert "#### Left out of the manifests" in body
    assert "- `Job/web-connection`: a test hook: `helm test` runs it" in body


def test_a_chart_without_omitted_hooks_renders_helms_output_as_it_is(tmp_path):
    web = chart(tmp_path / "web", "web", {"deployment.yaml": DEPLOYMENT})
    image = pinned("127.0.0.1:5000/app")

    render = HelmRenderer(web).template("web", "prod", image=image)

    assert render.omitted == []
    assert render.manifests.startswith("---\n# Source: web/templates/deployment.yaml\n")


# --- Capabilities (case 14) --------------------------------------------------------------------

SERVICE_MONITOR = """\
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  endpoints: [{port: http}]
{{- end }}
"""
GATEWAY_ONLY_ON_NEW_CLUSTERS = """\
{{- if semverCompare ">=1.33-0" .Capabilities.KubeVersion.Version }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-new-cluster
data: {version: {{ .Capabilities.KubeVersion.Version | quote }}}
{{- end }}
"""


@pytest.fixture
def capapp(tmp_path: Path) -> Path:
    """Case 14: a ServiceMonitor enabled in values, guarded by .Capabilities.APIVersions.Has."""
    return chart(
        tmp_path / "capapp",
        "capapp",
        {
            "deployment.yaml": DEPLOYMENT,
            "servicemonitor.yaml": SERVICE_MONITOR,
            "new-cluster.yaml": GATEWAY_ONLY_ON_NEW_CLUSTERS,
        },
        **{
            "values.yaml": "image: {repository: capapp, digest: ''}\n"
            "metrics: {serviceMonitor: {enabled: true}}\n"
        },
    )


def test_case_14_an_environment_serving_the_api_gets_the_guarded_object(capapp):
    config = parse_config(
        "apps: [{name: capapp, repo: capapp, image: capapp, chart: chart}]\n"
        "environments:\n"
        "  - name: prod\n    namespace: prod\n"
        "    kubernetes: {version: v1.33.2, api_versions: [monitoring.coreos.com/v1]}\n"
    )
    image = pinned("127.0.0.1:5000/capapp")

    objects = split_objects(
        HelmRenderer(capapp, kubernetes=config.environment("prod").kubernetes).render(
            "capapp", "prod", image=image
        )
    )

    assert "ServiceMonitor/capapp" in objects
    assert objects["ConfigMap/capapp-new-cluster"]["data"]["version"] == "v1.33.2"


def test_ci_renders_with_the_validation_defaults(capapp, logs):
    image = pinned("127.0.0.1:5000/capapp")

    objects = split_objects(HelmRenderer(capapp).render("capapp", "ci", image=image))
    check = ci_check(capapp, logs, image, release="capapp")

    # Kubernetes 1.30 (what validation checks against), with only its built-in APIs.
    assert sorted(objects) == ["Deployment/capapp"]
    assert check.passed and check.summary == "1 objects rendered, all valid"


def test_lint_and_the_test_render_see_the_same_kubernetes(tmp_path, logs):
    # Broken YAML on a Kubernetes newer than the one CI validates against (helm lint's `fail` is
    # lenient, a parse error is not).
    guard = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: guard}\n"
        '{{- if semverCompare ">=1.31-0" .Capabilities.KubeVersion.Version }}\n'
        "data: [unclosed\n{{- end }}\n"
    )
    web = chart(tmp_path / "web", "web", {"deployment.yaml": DEPLOYMENT, "guard.yaml": guard})

    lint, check = helm_lint(web, logs=logs), ci_check(web, logs)

    assert lint.passed, lint.summary
    assert check.passed, check.summary


def test_kubernetes_capabilities_are_checked_in_the_config():
    with pytest.raises(ConfigurationError, match=r"kubernetes\.api_versions: monitoring/ v1"):
        parse_config(
            "apps: [{name: a, repo: a, image: a, chart: chart}]\n"
            "environments: [{name: prod, namespace: prod, "
            "kubernetes: {api_versions: ['monitoring/ v1']}}]\n"
        )
    with pytest.raises(ConfigurationError, match=r"kubernetes\.version"):
        parse_config(
            "apps: [{name: a, repo: a, image: a, chart: chart}]\n"
            "environments: [{name: prod, namespace: prod, kubernetes: {version: latest}}]\n"
        )
    assert KubernetesConfig().version == "1.30"


# --- The image CI built is what runs (case 10, the helm create scaffold) -------------------------


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    """The chart `helm create web` makes: it builds the image from repository:tag."""
    subprocess.run(
        [find_tool("helm"), "create", "web"], cwd=tmp_path, check=True, capture_output=True
    )
    return tmp_path / "web"


def test_case_10_a_chart_ignoring_the_digest_fails_the_rendered_check(scaffold, logs):
    image = pinned("127.0.0.1:5000/web")
    started = time.monotonic()

    check = ci_check(scaffold, logs, image)

    assert time.monotonic() - started < 10
    assert not check.passed
    assert "Deployment/web container 'web' runs 127.0.0.1:5000/web:" in check.summary
    assert "Baton set image.repository and image.digest" in check.summary
    with pytest.raises(ImageNotPinned) as failed:
        HelmRenderer(scaffold).render("web", "prod", image=image)
    message = str(failed.value)
    assert "set apps[].helm.image_values" in message
    assert "e.g. {repository: image.repository, tag: image.tag}" in message
    assert application_error(failed.value).non_retryable


def test_the_helm_create_scaffold_configured_with_its_tag_key_runs_the_pinned_digest(scaffold):
    config = parse_config(
        "apps:\n  - name: web\n    repo: web\n    image: web\n    chart: chart\n"
        "    helm:\n      image_values: {repository: image.repository, tag: image.tag}\n"
    )
    image = pinned("127.0.0.1:5000/web", tag="git-0123456789ab")

    objects = split_objects(
        HelmRenderer(scaffold, image_values=config.app("web").helm.image_values).render(
            "web", "prod", image=image
        )
    )

    containers = objects["Deployment/web"]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [f"127.0.0.1:5000/web:git-0123456789ab@{DIGEST}"]
    # `helm create`'s test hook is left out: an install does not run it.
    assert "Pod/web-test-connection" not in objects


def test_a_chart_taking_one_image_string_runs_the_pinned_digest(tmp_path):
    web = chart(
        tmp_path / "web",
        "web",
        {
            "deployment.yaml": DEPLOYMENT.replace(
                '"{{ .Values.image.repository }}@{{ .Values.image.digest }}"',
                "{{ .Values.app.image | quote }}",
            )
        },
        **{"values.yaml": "app: {image: 'web:latest'}\n"},
    )
    image = pinned("127.0.0.1:5000/web")

    rendered = HelmRenderer(web, image_values=ImageValues(image="app.image")).render(
        "web", "prod", image=image
    )

    pod = split_objects(rendered)["Deployment/web"]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [image.ref]


def test_a_chart_that_runs_another_image_entirely_fails(tmp_path):
    web = chart(
        tmp_path / "web",
        "web",
        {"deployment.yaml": DEPLOYMENT.replace('"{{ .Values.image.repository }}@', '"nginx@')},
    )

    with pytest.raises(ImageNotPinned, match=r"no container runs 127\.0\.0\.1:5000/web"):
        HelmRenderer(web).render("web", "prod", image=pinned("127.0.0.1:5000/web"))


def test_artifacts_pin_the_tag_ci_pushed_beside_the_digest():
    artifact = fake_artifact("web", "f" * 40)

    assert artifact.pinned_image.tag == "f" * 40
    assert (
        artifact.model_copy(update={"metadata": {"tag": "git-ffffffffffff"}}).pinned_image.tag
        == "git-ffffffffffff"
    )


def test_image_values_take_one_shape():
    app = "apps: [{name: a, repo: a, image: a, chart: chart, helm: {image_values: %s}}]\n"
    for bad in ("{repository: image.repository}", "{image: image, tag: image.tag}"):
        with pytest.raises(ConfigurationError, match=r"apps\[0\]\.helm\.image_values"):
            parse_config(app % bad)
    with pytest.raises(ConfigurationError, match="helm options apply to chart apps only"):
        parse_config(
            "apps: [{name: a, repo: a, image: a, kustomize: k, "
            "helm: {image_values: {image: image}}}]\n"
        )


# --- Fail fast, in helm's words (cases 16, 17) -------------------------------------------------


def requiring_chart(root: Path) -> Path:
    """Cases 16 and 17: the sample chart, now requiring databaseUrl (CI's test values set it)."""
    shutil.copytree(SAMPLE_CHART, root)
    deployment = root / "templates" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text().replace(
            "          env:\n",
            "          env:\n            - name: DATABASE_URL\n              value: {{ required "
            '"databaseUrl is required: set it in the environment\'s values" '
            ".Values.databaseUrl | quote }}\n",
        )
    )
    return root


DEV_VALUES = "environment: dev\nreplicaCount: 1\nservice:\n  port: 18081\n"


def test_case_17_a_failed_render_says_helms_error_not_its_debug_hint(tmp_path, logs):
    sample = requiring_chart(tmp_path / "sample-app")
    values = write(tmp_path, {"dev-values.yaml": DEV_VALUES}) / "dev-values.yaml"
    image = pinned("127.0.0.1:5000/sample-app")

    check = render_and_validate(
        "rendered",
        HelmRenderer(sample),
        release="sample-app",
        namespace="ci",
        values_files=[values],
        image=image,
        logs=logs,
    )
    with pytest.raises(RenderFailed) as failed:
        HelmRenderer(sample).render("sample-app", "dev", values_files=[values], image=image)

    expected = re.compile(
        r"failed: execution error at \(sample-app/templates/deployment\.yaml:\d+:\d+\): "
        r"databaseUrl is required: set it in the environment's values$"
    )
    assert not check.passed and expected.search(check.summary)
    assert expected.search(str(failed.value))
    assert "--debug" not in check.summary + str(failed.value)
    assert application_error(failed.value).non_retryable


def test_an_unknown_kind_fails_the_rendered_check(tmp_path, logs):
    web = chart(
        tmp_path / "web",
        "web",
        {
            "deployment.yaml": DEPLOYMENT,
            "ingress.yaml": "apiVersion: extensions/v1beta1\nkind: Ingress\n"
            "metadata: {name: web}\nspec: {}\n",
        },
    )

    check = ci_check(web, logs)

    assert not check.passed
    assert check.summary == (
        "Ingress/web: Kubernetes 1.30 serves no kind Ingress in extensions/v1beta1: "
        "fix the kind or apiVersion"
    )


def test_a_chart_rendering_an_object_twice_fails_the_check_not_the_step(tmp_path, logs):
    web = chart(tmp_path / "web", "web", {"a.yaml": DEPLOYMENT, "b.yaml": DEPLOYMENT})

    check = ci_check(web, logs)

    assert not check.passed and check.summary == "Deployment/web: defined more than once"


def test_the_tools_error_line_continues_and_drops_the_hint():
    helm = (
        "Error: YAML parse error on web/templates/a.yaml:\nline 3: bad\n\nUse --debug flag to x\n"
    )
    kustomize = "some progress\nerror: accumulating resources: missing.yaml: no such file\n"

    assert error_line(helm) == "YAML parse error on web/templates/a.yaml: line 3: bad"
    assert error_line(kustomize) == "accumulating resources: missing.yaml: no such file"
    assert error_line("first\nlast\n") == "last"
    assert error_line("") == "no output"


def deploying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: Path, values: str
) -> Context:
    """Activities act on a GitOps repository (local forge) holding prod's `values` for web, and
    the chart CI published is `published` (fetched as a copy)."""
    seed = write(tmp_path / "seed", {"environments/prod/web/values.yaml": values})
    # One process, no registry: what activities hand over stays under BATON_HOME.
    settings = Settings(home=tmp_path / "home", api_port=closed_port(), store="home")
    ctx = Context(
        settings, parse_config(f"apps: [{APP}]\nenvironments: [{{name: prod, namespace: prod}}]\n")
    )
    ctx.forge.create_repo("gitops", from_dir=seed)
    monkeypatch.setattr(activity_context, "_current", ctx)

    def fetch_chart(artifact: Artifact, dest: Path, registry: object) -> Path:
        return Path(shutil.copytree(published, Path(dest) / artifact.chart_name))

    monkeypatch.setattr(deploy.artifacts, "fetch_chart", fetch_chart)
    return ctx


def test_cd_renders_for_the_environments_kubernetes_and_says_what_it_left_out(
    tmp_path, monkeypatch, scaffold
):
    write(scaffold, {"templates/servicemonitor.yaml": SERVICE_MONITOR})
    values = "metrics: {serviceMonitor: {enabled: true}}\n"
    ctx = deploying(tmp_path, monkeypatch, scaffold, values)
    environment = prod(kubernetes={"version": "1.33", "api_versions": ["monitoring.coreos.com/v1"]})
    app = {"name": "web", "repo": "web", "image": "web", "chart": "chart"}
    helm = {"image_values": {"repository": "image.repository", "tag": "image.tag"}}
    rollout = rollout_of(environment).model_copy(
        update={"app": AppConfig.model_validate({**app, "helm": helm})}
    )

    rendered = ActivityEnvironment().run(deploy.render_environment, rollout)

    objects = split_objects(ctx.blobs.get(rendered.content_ref))
    assert "ServiceMonitor/web" in objects
    containers = objects["Deployment/web"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == f"r/web:{'f' * 40}@{rollout.artifact.image_digest}"
    assert [(o.key, o.reason) for o in rendered.omitted] == [
        ("Pod/web-test-connection", "a test hook: `helm test` runs it, an install does not")
    ]


async def test_case_16_a_chart_missing_a_required_value_fails_the_rollout_within_10s(
    isolated_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real render activity; the environment's values in the GitOps repository do not set
    databaseUrl, which the published chart now requires."""
    published = requiring_chart(tmp_path / "published" / "sample-app")
    deploying(tmp_path, monkeypatch, published, DEV_VALUES)
    rollout = rollout_of(prod(required=0)).model_copy(
        update={"artifact": fake_artifact("sample-app", "f" * 40)}
    )
    with ThreadPoolExecutor(2) as pool:
        async with (
            Worker(
                isolated_client,
                task_queue=TaskQueues.DEPLOY,
                activities=[deploy.render_environment],
                activity_executor=pool,
            ),
            Worker(
                isolated_client, task_queue=TaskQueues.WORKFLOWS, workflows=[EnvironmentRollout]
            ),
        ):
            started = time.monotonic()
            handle = await isolated_client.start_workflow(
                EnvironmentRollout.run,
                rollout,
                id=f"rollout/case-16/{uuid.uuid4()}",
                task_queue=TaskQueues.WORKFLOWS,
            )
            with pytest.raises(WorkflowFailureError) as failed:
                await asyncio.wait_for(handle.result(), timeout=10)
            elapsed = time.monotonic() - started
            status = await handle.query(EnvironmentRollout.status)

    assert elapsed < 10
    render = next(stage for stage in status.timeline if stage.name == "render")
    assert render.outcome == "failed"
    assert render.detail.startswith(
        "helm template of oci://r/charts/sample-app:0.1.0-gffffffffffff failed: execution error"
    )
    assert "databaseUrl is required: set it in the environment's values" in render.detail
    assert "--debug" not in render.detail
    cause = failed.value.cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == "RenderFailed"
    assert "databaseUrl is required" in cause.message
