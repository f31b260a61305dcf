"""Benchmark: Baton's whole render step against the tool's own render, side by side.

Two inputs: a chart of 50 objects (10 workloads, each a Deployment, Service, ConfigMap,
ServiceAccount and PodDisruptionBudget) and the Kustomize sample app (examples/sample-kustomize
with dev's overlay from examples/gitops). Each round times, one after the other on the same
machine, the tool alone (`helm template`; `kubectl kustomize` of the app's kustomization) and
Baton's render step for an environment (`render_for_environment`: two renders, the comparison
that finds fields differing between them, the digest pin check, validation against the
environment's Kubernetes schemas). Medians over the rounds, and their ratio: the goal is a
ratio of at most 2 (issue 11). Prints one JSON object.

    .venv/bin/python -m bench.render [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from baton.config import AppConfig, EnvironmentConfig, parse_config
from baton.environment_render import render_for_environment
from baton.models import PinnedImage
from baton.render import split_objects
from baton.tools import PROJECT_ROOT, find_tool

EXAMPLES = PROJECT_ROOT / "examples"
DIGEST = "sha256:" + "b" * 64
WORKLOADS = 10

CONFIG = """
apps:
  - {name: bench, repo: bench, chart: chart, image: bench}
  - name: sample-kustomize
    repo: sample-kustomize
    kustomize: deploy/overlays/production
    image: sample-kustomize
environments:
  - {name: dev, namespace: dev}
"""

TEMPLATE = """\
{{- range $i := until (int .Values.workloads) }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: "w{{ $i }}", labels: {app: "w{{ $i }}"}}
spec:
  replicas: {{ $.Values.replicas }}
  selector: {matchLabels: {app: "w{{ $i }}"}}
  template:
    metadata: {labels: {app: "w{{ $i }}"}}
    spec:
      serviceAccountName: "w{{ $i }}"
      containers:
        - name: app
          image: "{{ $.Values.image.repository }}@{{ $.Values.image.digest }}"
          ports: [{containerPort: 8080}]
          envFrom: [{configMapRef: {name: "w{{ $i }}"}}]
          resources: {limits: {cpu: 100m, memory: 128Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: "w{{ $i }}"}
spec:
  selector: {app: "w{{ $i }}"}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: "w{{ $i }}"}
data: {INDEX: "{{ $i }}", GREETING: {{ $.Values.greeting | quote }}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: "w{{ $i }}"}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: "w{{ $i }}"}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: "w{{ $i }}"}}
{{- end }}
"""


def write_chart(root: Path) -> Path:
    """The 50-object chart, and its values file for dev."""
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(
        f"workloads: {WORKLOADS}\nreplicas: 1\ngreeting: hello\n"
        "image: {repository: bench, digest: ''}\n"
    )
    (chart / "templates" / "workloads.yaml").write_text(TEMPLATE)
    return chart


def median_s(run: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def tool(command: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(command, check=True, capture_output=True)


def measure(
    name: str,
    tool_run: Callable[[], object],
    baton_run: Callable[[], str],
    rounds: int,
) -> dict[str, object]:
    """Alternate the tool and Baton round by round, so both see the same machine load."""
    objects = len(split_objects(baton_run()))  # also warms both up
    tool_run()
    tool_s, baton_s = [], []
    for _ in range(rounds):
        tool_s.append(median_s(tool_run, 1))
        baton_s.append(median_s(baton_run, 1))
    tool_median, baton_median = statistics.median(tool_s), statistics.median(baton_s)
    return {
        "input": name,
        "objects": objects,
        "rounds": rounds,
        "tool_s": round(tool_median, 4),
        "baton_s": round(baton_median, 4),
        "ratio": round(baton_median / tool_median, 2),
        "goal_ratio": 2.0,
    }


def render(app: AppConfig, env: EnvironmentConfig, templates: Path, inputs: dict[str, str]):
    image = PinnedImage(repository=f"127.0.0.1:5000/{app.image}", digest=DIGEST)

    def run() -> str:
        return render_for_environment(
            app, env, templates, inputs=inputs, image=image, deployed=None
        ).manifests

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    config = parse_config(CONFIG)
    dev = config.environment("dev")
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        chart = write_chart(Path(tmp))
        values = "greeting: hello from dev\nreplicas: 2\n"
        values_file = Path(tmp) / "dev-values.yaml"
        values_file.write_text(values)
        helm = [find_tool("helm"), "template", "bench", str(chart), "--namespace", "dev"]
        helm += ["--kube-version", dev.kubernetes.version, "--values", str(values_file)]
        kustomize_app = config.app("sample-kustomize")
        overlay = EXAMPLES / "gitops" / "environments" / "dev" / "sample-kustomize"
        overlay_inputs = {
            f"environments/dev/sample-kustomize/{file.name}": file.read_text()
            for file in overlay.iterdir()
            if file.is_file()
        }
        kustomization = EXAMPLES / "sample-kustomize" / "deploy" / "overlays" / "production"
        results = [
            measure(
                "helm chart, 50 objects",
                tool(helm),
                render(
                    config.app("bench"), dev, chart, {"environments/dev/bench/values.yaml": values}
                ),
                rounds,
            ),
            measure(
                "kustomize sample app",
                tool([find_tool("kubectl"), "kustomize", str(kustomization)]),
                render(kustomize_app, dev, EXAMPLES / "sample-kustomize", overlay_inputs),
                rounds,
            ),
        ]
    print(json.dumps({"benchmark": "render", "results": results}, indent=1))


if __name__ == "__main__":
    main()
