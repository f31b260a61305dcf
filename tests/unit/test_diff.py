"""What reviewers read in a GitOps PR: the per-object rendered diff and the template diff."""

from __future__ import annotations

import shutil
from pathlib import Path

from baton.diff import diff_manifests, diff_trees, field_path, unstable_fields
from baton.models import PinnedImage
from baton.render import HelmRenderer
from tests.fixtures.charts import GREETING, PROD_VALUES

SAMPLE_CHART = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "chart"
TEST_VALUES = SAMPLE_CHART / "ci" / "test-values.yaml"
OLD = PinnedImage(repository="127.0.0.1:5000/sample-app", digest="sha256:" + "a" * 64)
NEW = PinnedImage(repository="127.0.0.1:5000/sample-app", digest="sha256:" + "b" * 64)


def test_diff_of_two_renders_shows_the_image_digest_change():
    renderer = HelmRenderer(SAMPLE_CHART)
    old = renderer.render("web", "dev", values_files=[TEST_VALUES], image=OLD)
    new = renderer.render("web", "dev", values_files=[TEST_VALUES], image=NEW)

    diff = diff_manifests(old, new)

    assert [(c.action, c.key) for c in diff.changes] == [("changed", "Deployment/web-sample-app")]
    markdown = diff.to_markdown()
    assert "#### changed: `Deployment/web-sample-app`" in markdown
    assert f"-        image: {OLD.ref}\n+        image: {NEW.ref}" in markdown
    assert "```diff" in markdown


def test_identical_renders_have_an_empty_diff():
    rendered = HelmRenderer(SAMPLE_CHART).render("web", "dev", image=OLD)

    diff = diff_manifests(rendered, rendered)

    assert diff.empty
    assert diff.to_markdown() == "No changes to the rendered manifests."


def test_diff_lists_added_and_removed_objects():
    diff = diff_manifests(CONFIGMAP.format(name="old"), CONFIGMAP.format(name="new"))

    assert [(c.action, c.key) for c in diff.changes] == [
        ("added", "ConfigMap/dev/new"),
        ("removed", "ConfigMap/dev/old"),
    ]
    assert diff.to_markdown().startswith("Rendered manifests: 1 added, 1 removed")


def test_diff_never_shows_secret_values():
    old = SECRET.format(password="hunter2")
    new = SECRET.format(password="correct-horse")

    markdown = diff_manifests(old, new).to_markdown()

    assert "hunter2" not in markdown and "correct-horse" not in markdown
    assert "-  password: <redacted>\n+  password: <redacted, changed>" in markdown
    assert diff_manifests(old, old).empty


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: dev}}
data: {{greeting: hello}}
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: dev}}
stringData: {{password: {password}, user: app}}
"""


def test_non_ascii_values_read_as_deployed_in_the_diff(tmp_path: Path) -> None:
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    before.write_text(PROD_VALUES, encoding="utf-8")
    after.write_text(PROD_VALUES + f'greeting: "{GREETING}"\n', encoding="utf-8")
    renderer = HelmRenderer(SAMPLE_CHART)
    old = renderer.render("sample-app", "prod", values_files=[before], image=OLD)
    new = renderer.render("sample-app", "prod", values_files=[after], image=OLD)

    markdown = diff_manifests(old, new).to_markdown()

    assert f"+        - name: APP_GREETING\n+          value: {GREETING}" in markdown
    assert "\\u" not in markdown and "\\x" not in markdown


def test_characters_a_reader_cannot_see_stay_escaped() -> None:
    old = CONFIGMAP.format(name="greeting")
    # U+202E turns the rest of a line around on screen; U+00A0 looks like a space.
    new = old.replace("greeting: hello", 'greeting: "hello \\u202e olleh", note: "a\\u00a0b ☕"')

    markdown = diff_manifests(old, new).to_markdown()

    assert '+  greeting: "hello \\u202E olleh"' in markdown
    assert "\u202e" not in markdown and "\u00a0" not in markdown
    assert '+  note: "a\\_b \\u2615"' in markdown


def test_a_long_object_diff_is_folded_and_past_the_budget_only_named() -> None:
    many = "\n".join(f"  key{i}: value{i}" for i in range(60))
    old = CONFIGMAP.format(name="big").replace("data: {greeting: hello}", "data:\n" + many)
    new = old.replace("value", "changed")
    also = SECRET.format(password="a"), SECRET.format(password="b")

    folded = diff_manifests(old, new).to_markdown()
    cut = diff_manifests(old + "---\n" + also[0], new + "---\n" + also[1]).to_markdown(1000)

    assert "#### changed: `ConfigMap/dev/big`\n\n<details><summary>" in folded
    assert "+  key59: changed59" in folded
    assert "its diff is in this PR's changes to the manifests file" in cut
    assert "#### changed: `Secret/dev/db`" in cut


def test_template_diff_names_each_changed_file_with_its_diff(tmp_path: Path) -> None:
    old, new = tmp_path / "old" / "chart", tmp_path / "new" / "chart"
    shutil.copytree(SAMPLE_CHART, old)
    shutil.copytree(SAMPLE_CHART, new)
    deployment = new / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("periodSeconds: 5", "periodSeconds: 7"))
    (new / "templates" / "service.yaml").unlink()
    (new / "templates" / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    (new / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    values = "environments/prod/sample-app/values.yaml"

    diff = diff_trees(
        old,
        new,
        before="sample-app 0.1.0-gaaaaaaaaaaaa",
        after="sample-app 0.1.0-gbbbbbbbbbbbb",
        extra={values: (PROD_VALUES, PROD_VALUES + f"greeting: {GREETING}\n")},
    )

    assert [(f.action, f.path) for f in diff.files] == [
        ("added", "logo.png"),
        ("added", "templates/configmap.yaml"),
        ("changed", "templates/deployment.yaml"),
        ("removed", "templates/service.yaml"),
        ("changed", values),
    ]
    markdown = diff.to_markdown(full_diff="rendered/prod/sample-app/templates.diff")
    assert markdown.startswith(
        "sample-app 0.1.0-gaaaaaaaaaaaa → sample-app 0.1.0-gbbbbbbbbbbbb: 5 file(s) changed"
    )
    assert "-            periodSeconds: 5\n+            periodSeconds: 7" in markdown
    assert "#### added: `logo.png`\n\nbinary file" in markdown
    assert f"+greeting: {GREETING}" in markdown
    unified = diff.to_unified()
    assert "--- a/templates/service.yaml\n+++ /dev/null\n" in unified
    assert "--- /dev/null\n+++ b/templates/configmap.yaml\n" in unified
    small = diff.to_markdown(full_diff="rendered/prod/sample-app/templates.diff", budget_chars=200)
    assert "its diff is in `rendered/prod/sample-app/templates.diff` in this PR" in small


def test_identical_templates_make_no_template_diff() -> None:
    diff = diff_trees(SAMPLE_CHART, SAMPLE_CHART, before="a", after="sample-app 0.1.0")
    assert diff.files == []
    assert diff.to_markdown() == "No template changes (sample-app 0.1.0)."


def test_unstable_fields_are_named_by_their_paths() -> None:
    first = CONFIGMAP.format(name="x").replace("greeting: hello", "greeting: hello, at: '1'")
    second = first.replace("at: '1'", "at: '2'")

    unstable = unstable_fields(first, second)

    assert unstable == {"ConfigMap/dev/x": [("data", "at")]}
    assert field_path(("metadata", "annotations", "app.kubernetes.io/name")) == (
        'metadata.annotations["app.kubernetes.io/name"]'
    )
    assert field_path(("spec", "containers", 0, "env", 1, "value")) == (
        "spec.containers[0].env[1].value"
    )


def test_the_template_diff_shows_characters_a_reader_cannot_see(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root, text in ((old, "name: admin\n"), (new, "name: user\u202e\u2066 # nimda\n")):
        (root / "templates").mkdir(parents=True)
        (root / "templates" / "role.yaml").write_text(f"{text}greeting: {GREETING}\n")

    diff = diff_trees(old, new, before="a", after="b")

    assert "+name: user<U+202E><U+2066> # nimda" in diff.to_markdown()
    assert "\u202e" in diff.to_unified()  # the committed diff keeps the bytes
    assert GREETING in diff.to_markdown()


def test_a_diff_holding_a_code_fence_stays_inside_its_block(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root, text in ((old, "Install:\n"), (new, "Install:\n\n```sh\nhelm install x .\n```\n")):
        root.mkdir()
        (root / "README.md").write_text(text)

    markdown = diff_trees(old, new, before="a", after="b").to_markdown()

    assert "#### changed: `README.md`\n\n````diff\n" in markdown
    assert "+```sh\n+helm install x .\n+```\n````" in markdown
