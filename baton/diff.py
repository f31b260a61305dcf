"""What reviewers read in a GitOps pull request: rendered manifests diffed object by object, the
templates they came from diffed file by file, and the fields two renders of the same inputs
disagree on (random passwords, timestamps).

Text stays text: YAML is dumped with `allow_unicode`, so `Grüß Gott` reads as written, while
characters a reader cannot see (controls, zero-width and bidirectional marks, non-breaking
spaces) stay escaped, so a reviewer never approves text that reads differently from what runs.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from baton.render import YAML_LOADER, object_key, split_objects

ObjectAction = Literal["added", "changed", "removed"]
FieldPath = tuple[str | int, ...]

OPEN_DIFF_LINES = 40
"""A diff up to this many lines shows open; a longer one is folded into a `<details>` block."""
BODY_BUDGET_CHARS = 25_000
"""Diff text one PR body section may carry; forges cap bodies (GitHub: 65,536 characters), and a
body holds two such sections (templates, rendered manifests)."""

_DOCUMENT_START = re.compile(r"(^---[^\n]*(?:\n|$))", re.MULTILINE)
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_/-]+$")
_BACKTICKS = re.compile(r"`+")


class ObjectChange(BaseModel):
    key: str
    action: ObjectAction
    diff: str  # unified diff of the object's YAML (Secret values masked)

    @property
    def kind(self) -> str:
        return self.key.split("/", 1)[0]


class ManifestDiff(BaseModel):
    """What a change of rendered manifests does, object by object."""

    changes: list[ObjectChange]

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_markdown(self, budget_chars: int = BODY_BUDGET_CHARS) -> str:
        """A section per object with a ```diff block, for GitOps pull request bodies.

        Long object diffs are folded into `<details>`; past `budget_chars` an object is only
        named, its full diff being the PR's own diff of the manifests file.
        """
        if not self.changes:
            return "No changes to the rendered manifests."
        counts = {
            a: sum(c.action == a for c in self.changes) for a in ("added", "changed", "removed")
        }
        head = "Rendered manifests: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        sections = [
            (f"{change.action}: `{change.key}`", change.diff, None) for change in self.changes
        ]
        more = "its diff is in this PR's changes to the manifests file"
        return head + "\n\n" + _fold(sections, budget_chars, more) + "\n"


def diff_manifests(old_text: str, new_text: str) -> ManifestDiff:
    """Per-object differences between two renders (added, changed, removed)."""
    old, new = split_objects(old_text), split_objects(new_text)
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before = _dump(old[key]) if key in old else ""
        after = _dump(new[key], previous=old.get(key)) if key in new else ""
        if before == after:
            continue
        action: ObjectAction = "added" if not before else "removed" if not after else "changed"
        changes.append(ObjectChange(key=key, action=action, diff=_unified(before, after, key)))
    return ManifestDiff(changes=changes)


class FileChange(BaseModel):
    path: str
    action: ObjectAction
    diff: str = ""  # unified diff; empty for a binary file
    added: int = 0
    removed: int = 0


class TemplateDiff(BaseModel):
    """What changed in the templates (chart or Kustomize base) and inputs between two renders."""

    before: str = ""  # what the environment runs now, e.g. `sample-app 0.1.0-g1234abcd5678`
    after: str = ""  # the new version
    files: list[FileChange] = []

    def to_unified(self) -> str:
        """The whole diff as one text, file after file, as `diff -u` writes them."""
        return "".join(change.diff + "\n" for change in self.files if change.diff)

    def to_markdown(
        self, full_diff: str | None = None, budget_chars: int = BODY_BUDGET_CHARS
    ) -> str:
        """A summary line and a ```diff block per file; long ones folded into `<details>`.

        `full_diff` names where the whole diff is (a file in the PR) for files past the budget.
        """
        if not self.files:
            return f"No template changes ({self.after})." if self.after else "No template changes."
        added, removed = sum(f.added for f in self.files), sum(f.removed for f in self.files)
        head = (
            f"{self.before} → {self.after}: {len(self.files)} file(s) changed, +{added} −{removed}"
        )
        sections = [
            (
                f"{change.action}: `{change.path}`",
                reveal_hidden(change.diff),
                None if change.diff else "binary file",
            )
            for change in self.files
        ]
        more = f"its diff is in `{full_diff}` in this PR" if full_diff else "diff left out"
        return head + "\n\n" + _fold(sections, budget_chars, more) + "\n"


def diff_trees(
    old: Path | None,
    new: Path,
    *,
    before: str = "",
    after: str = "",
    extra: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> TemplateDiff:
    """The files added, changed and removed from directory `old` (None: nothing) to `new`.

    `extra` adds named texts compared alongside (the environment's values: path → (old, new)).
    """
    olds, news = _files(old), _files(new)
    texts: dict[str, tuple[bytes | None, bytes | None]] = {
        path: (olds.get(path), news.get(path)) for path in sorted(olds.keys() | news.keys())
    }
    for path, (old_text, new_text) in (extra or {}).items():
        texts[path] = (
            None if old_text is None else old_text.encode(),
            None if new_text is None else new_text.encode(),
        )
    files = []
    for path, (a, b) in texts.items():
        if a == b:
            continue
        action: ObjectAction = "added" if a is None else "removed" if b is None else "changed"
        try:
            before_text, after_text = (a or b"").decode(), (b or b"").decode()
        except UnicodeDecodeError:
            files.append(FileChange(path=path, action=action))
            continue
        diff = list(
            difflib.unified_diff(
                before_text.splitlines(),
                after_text.splitlines(),
                f"a/{path}" if a is not None else "/dev/null",
                f"b/{path}" if b is not None else "/dev/null",
                lineterm="",
            )
        )
        body = diff[2:]
        files.append(
            FileChange(
                path=path,
                action=action,
                diff="\n".join(diff),
                added=sum(line.startswith("+") for line in body),
                removed=sum(line.startswith("-") for line in body),
            )
        )
    return TemplateDiff(before=before, after=after, files=files)


def unstable_fields(first: str, second: str) -> dict[str, list[FieldPath]]:
    """The fields two renders of the same inputs disagree on, by object key.

    An object only one render holds (its name is random) is reported with the empty path.
    """
    a, b = split_objects(first), split_objects(second)
    found: dict[str, list[FieldPath]] = {}
    for key in sorted(a.keys() | b.keys()):
        if key not in a or key not in b:
            found[key] = [()]
            continue
        paths = list(_differences(a[key], b[key], ()))
        if paths:
            found[key] = paths
    return found


def field_path(path: FieldPath) -> str:
    """A field path as people write it: `data.password`, `spec.containers[0].env[1].value`,
    `metadata.annotations["app.kubernetes.io/name"]`; the empty path is `(the whole object)`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]".replace("'", '"')
    return out or "(the whole object)"


def describe_unstable(unstable: Mapping[str, Sequence[FieldPath]]) -> list[str]:
    """One line per object: `Secret/prod/x: data.password, data.token`."""
    return [
        f"{key}: {', '.join(field_path(path) for path in paths)}" for key, paths in unstable.items()
    ]


def keep_deployed(
    manifests: str, deployed: str | None, unstable: Mapping[str, Sequence[FieldPath]]
) -> str:
    """`manifests` with each unstable field set to its value in `deployed`, where it has one.

    A random password the chart generates then stays what runs instead of changing on every
    rollout. Documents without such a field keep the renderer's text byte for byte.
    """
    old = split_objects(deployed or "")
    parts = _DOCUMENT_START.split(manifests)
    for index in range(0, len(parts), 2):
        text = parts[index]
        obj = yaml.load(text, Loader=YAML_LOADER)
        if not isinstance(obj, dict) or "kind" not in obj:
            continue
        key = object_key(obj)
        previous = old.get(key)
        if previous is None or key not in unstable:
            continue
        kept = [p for p in unstable[key] if p and _set(obj, p, _get(previous, p))]
        if kept:
            comments = "".join(
                line for line in text.splitlines(keepends=True) if line.startswith("#")
            )
            parts[index] = comments + yaml.safe_dump(
                obj, sort_keys=False, allow_unicode=True, default_flow_style=False
            )
    return "".join(parts)


_MISSING = object()


def _get(obj: Any, path: FieldPath) -> Any:
    for part in path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return obj


def _set(obj: Any, path: FieldPath, value: Any) -> bool:
    """Set `path` in `obj` to `value`; False when either side lacks the field."""
    parent = _get(obj, path[:-1])
    if value is _MISSING or parent is _MISSING or _get(obj, path) is _MISSING:
        return False
    parent[path[-1]] = value
    return True


def _differences(a: Any, b: Any, path: FieldPath) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if key not in a or key not in b:
                yield (*path, key)
            else:
                yield from _differences(a[key], b[key], (*path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, (*path, index))
    elif a != b:
        yield path


def _files(root: Path | None) -> dict[str, bytes]:
    if root is None:
        return {}
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _unified(before: str, after: str, key: str) -> str:
    diff = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"a/{key}", f"b/{key}", lineterm=""
    )
    return "\n".join(list(diff)[2:])


def _fold(sections: Sequence[tuple[str, str, str | None]], budget_chars: int, more: str) -> str:
    """Markdown for (title, diff, note) sections: short diffs open, long ones in `<details>`,
    and past `budget_chars` only the title with `more` (where the full diff is)."""
    out: list[str] = []
    spent = 0
    for title, diff, note in sections:
        if note is not None:
            out.append(f"#### {title}\n\n{note}")
            continue
        lines = diff.count("\n") + 1
        # A fence longer than any run of backticks inside (a chart's README has its own).
        fence = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(diff)), default=0))
        block = f"{fence}diff\n{diff}\n{fence}"
        spent += len(block)
        if spent > budget_chars:
            out.append(f"#### {title}\n\n{lines} lines: {more}")
        elif lines <= OPEN_DIFF_LINES:
            out.append(f"#### {title}\n\n{block}")
        else:
            out.append(
                f"#### {title}\n\n<details><summary>{lines} lines</summary>\n\n{block}\n\n"
                "</details>"
            )
    return "\n\n".join(out)


class _ReviewDumper(yaml.SafeDumper):
    """Writes non-ASCII text as itself, but a string holding a character a reader cannot see
    (control, format such as U+200B or U+202E, a space other than U+0020) escaped whole."""

    def expect_node(
        self,
        root: bool = False,
        sequence: bool = False,
        mapping: bool = False,
        simple_key: bool = False,
    ) -> None:
        event = self.event
        if isinstance(event, yaml.ScalarEvent) and _hides_characters(event.value):
            self.allow_unicode, self.analysis = False, None
            try:
                super().expect_node(root, sequence, mapping, simple_key)
            finally:
                self.allow_unicode, self.analysis = True, None
            return
        super().expect_node(root, sequence, mapping, simple_key)


def reveal_hidden(text: str) -> str:
    """`text` with each character a reader cannot see written as `<U+202E>`; tabs and line
    breaks stay as they are."""
    return "".join(f"<U+{ord(ch):04X}>" if _hidden(ch) else ch for ch in text)


def _hides_characters(text: str) -> bool:
    return any(_hidden(ch) for ch in text)


def _hidden(ch: str) -> bool:
    if ch in "\t\n":
        return False
    if ch.isascii():
        return not ch.isprintable()
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Zl", "Zp", "Zs")


def _dump(obj: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    if obj.get("kind") == "Secret":
        # Diffs go into pull request bodies: show which secret values changed, never a value (not
        # even a hash, which a dictionary attack would reverse).
        obj = {**obj}
        for field in ("data", "stringData"):
            values, before = obj.get(field), (previous or {}).get(field) or {}
            if isinstance(values, dict):
                obj[field] = {
                    k: "<redacted>"
                    if previous is None or before.get(k) == v
                    else "<redacted, changed>"
                    for k, v in values.items()
                }
    return yaml.dump(
        obj, Dumper=_ReviewDumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )
