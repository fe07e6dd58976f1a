"""The shipped alert rules and Grafana dashboard: well-formed, about metrics the services really export,
and each alert explained in docs/operations.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import qastream_shared.consumer
import qastream_shared.outbox  # noqa: F401  (registers the relay's metrics)

REPO = Path(__file__).resolve().parents[3]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "qastream.json"
OPERATIONS = REPO / "docs" / "operations.md"
# Series every Prometheus has about its own scrape targets.
BUILTIN = {"up"}
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "by",
    "rate",
    "increase",
    "and",
    "or",
    "histogram_quantile",
    "le",
    "without",
}
DURATION = re.compile(r"^\d+[smhd]$")


def exported() -> set[str]:
    """Series names as scraped: counters get _total, histograms _bucket/_sum/_count."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("qa_"):
            names |= {s.name for s in family.samples} | {
                family.name + suffix
                for suffix in {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
                    family.type, [""]
                )
            }
    return names


def metrics_in(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    labels = set(re.findall(r"by \(([^)]*)\)", expr))
    label_names = {x.strip() for group in labels for x in group.split(",")}
    return words - PROMQL_WORDS - label_names


def test_alert_rules_are_well_formed_and_about_exported_metrics():
    rules = yaml.safe_load(ALERTS.read_text())
    names = set()
    known = exported() | BUILTIN
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert rule["alert"] not in names
            names.add(rule["alert"])
            assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description", "runbook"} <= set(rule["annotations"])
            assert rule["expr"].count("(") == rule["expr"].count(")")
            assert metrics_in(rule["expr"]) <= known, f"{rule['alert']}: {metrics_in(rule['expr']) - known}"


def test_every_alert_has_its_section_in_the_operations_guide():
    rules = yaml.safe_load(ALERTS.read_text())
    headings = set(re.findall(r"^#### (\w+)$", OPERATIONS.read_text(), re.M))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] in headings
            assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_dashboard_shows_throughput_lag_dead_letters_latency_and_freshness_from_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metrics_in(e) for e in exprs))
    assert used <= exported(), used - exported()
    for needed in (
        "qa_consumer_messages_total",
        "qa_consumer_lag",
        "qa_dlq_total",
        "qa_consumer_batch_seconds_bucket",
        "qa_consumer_event_age_seconds_bucket",
    ):
        assert needed in used
