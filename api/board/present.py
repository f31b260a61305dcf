"""Pure helpers that turn Baton's records into what the board's templates show: a rendered diff
split per object (security-sensitive ones marked with their reasons), durations in words, and
small inline SVG charts. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

FENCE = "```"


@dataclass
class DiffSection:
    """One object's (or file's) part of a diff: its title, its diff lines and notes, and why it
    is security-sensitive (empty: it is not)."""

    title: str
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The object key the title names: `Kind/namespace/name` in `added: ...`."""
        quoted = self.title.split("`")
        return quoted[1] if len(quoted) > 2 else self.title.split(" ", 1)[0]

    def owns(self, reason: str) -> bool:
        """Whether a sensitivity reason (`Kind/ns/name: why`, `Kind/ns/name added (...)`) is
        about this section's object."""
        key = self.key
        return bool(key) and reason.startswith(key) and reason[len(key) : len(key) + 1] in " :"


def diff_sections(markdown: str, sensitive: list[str] | None = None) -> list[DiffSection]:
    """Split a diff written for a PR body (`baton.diff`: `#### title`, then a ```diff block,
    long ones inside `<details>`) into sections; each sensitive reason (`Kind/ns/name ...`) goes
    to the section of its object, or to a leading section of its own when none matches."""
    sections: list[DiffSection] = []
    current: DiffSection | None = None
    fenced = False
    for line in markdown.splitlines():
        if line.startswith(FENCE):
            fenced = not fenced
            continue
        if fenced and current is not None:
            current.lines.append(line)
        elif line.startswith("#### "):
            current = DiffSection(line[5:].strip())
            sections.append(current)
        elif line.strip() and not line.lstrip().startswith(("<details", "</details")):
            if current is None:
                current = DiffSection("")
                sections.append(current)
            current.notes.append(line.strip())
    unplaced = []
    for reason in sensitive or []:
        owner = next((s for s in sections if s.owns(reason)), None)
        if owner is None:
            unplaced.append(reason)
        else:
            owner.sensitive.append(reason)
    if unplaced:
        sections.insert(0, DiffSection("security-sensitive", sensitive=unplaced))
    return sections


def line_kind(line: str) -> str:
    """The CSS class of a diff line: added, removed, hunk header or context."""
    if line.startswith(("+++", "---")):
        return "file"
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")


def duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """`1h 02m`, `3m 05s` or `12s` from `start` to `end` (still running: to `now`)."""
    if start is None:
        return ""
    return words((end or now) - start)


def words(span: timedelta | float | None) -> str:
    if span is None:
        return "–"
    seconds = int(span.total_seconds() if isinstance(span, timedelta) else span)
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def bars(values: list[float | None], label: str, width: int = 140, height: int = 28) -> str:
    """A small bar chart as inline SVG, one bar per value (None: no bar), described for screen
    readers by `label`."""
    present = [v for v in values if v is not None]
    top = max(present, default=0) or 1
    step = width / max(len(values), 1)
    rects = []
    for i, value in enumerate(values):
        if value is None:
            continue
        h = max(1.0, value / top * (height - 2)) if value else 1.0
        zero = "" if value else ' class="zero"'
        rects.append(
            f'<rect x="{i * step + 1:.1f}" y="{height - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}"{zero}><title>{value:g}</title></rect>'
        )
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(rects)}</svg>'
    )
