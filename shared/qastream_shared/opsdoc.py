"""The generated sections of docs/operations.md: every setting with its default (from `Settings`), and every
topic with its partitions, retention and compaction (from the topic registry).

`qa docs settings --write` / `qa docs topics --write` rewrite them in place; a test fails when they drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qastream_shared.settings import Settings, env_name
from qastream_shared.topics import REGISTRY, Topic

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_DAY_MS = 24 * 3600 * 1000


def _default(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "" or value == {}:
        return "(empty)"
    return f"`{value}`"


def _bounds(field: Any) -> str:
    parts = []
    for m in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                parts.append(f"{sign} {getattr(m, attr)}")
        if getattr(m, "pattern", None):
            parts.append(f"matches `{m.pattern}`")
        if getattr(m, "min_length", None):
            parts.append(f"at least {m.min_length} characters")
    return f" ({', '.join(parts)})" if parts else ""


def settings_section() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        text = ((field.description or "") + _bounds(field)).replace("|", "\\|")
        default = field.get_default(call_default_factory=True)
        rows.append(f"| `{env_name(name)}` | {_default(default)} | {text} |")
    return "\n".join(rows)


def _retention(t: Topic) -> str:
    if t.compacted:
        return "compacted (latest per key, forever)"
    if t.retention_ms is None:
        return "broker default"
    if t.retention_ms < 0:
        return "forever"
    return f"{t.retention_ms // _DAY_MS} days"


def topics_section() -> str:
    from qastream_shared.asyncapi import EXTERNAL, flows

    rows = [
        "| topic | partitions | retention | cleanup.policy | produced by | consumed by |",
        "|---|---|---|---|---|---|",
    ]
    by_topic = flows()
    for t in REGISTRY:
        partitions = f"{t.partitions} (QA_TOPIC_PARTITIONS)" if t.partitions > 1 else "1"
        policy = "compact" if t.compacted else "delete"
        producers = ", ".join(by_topic[t.name]["producers"]) or EXTERNAL
        consumers = ", ".join(by_topic[t.name]["consumers"]) or "operators, platform teams"
        rows.append(f"| `{t.name}` | {partitions} | {_retention(t)} | {policy} | {producers} | {consumers} |")
    return "\n".join(rows)


SECTIONS = {"settings": settings_section, "topics": topics_section}


def _marker(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} .*?-->\n)(.*?)(<!-- end generated: {name} -->)", re.S)


def render(text: str, name: str) -> str:
    """`text` with the named section replaced by what the code says now."""
    pattern = _marker(name)
    if not pattern.search(text):
        raise ValueError(f"docs/operations.md has no generated section {name!r}")
    return pattern.sub(lambda m: f"{m[1]}{SECTIONS[name]()}\n{m[3]}", text)


def section(text: str, name: str) -> str:
    m = _marker(name).search(text)
    return m[2] if m else ""
