"""The Grafana dashboard in deploy/grafana parses, queries only metrics the services register, and takes its
Prometheus from the ${DS_PROMETHEUS} variable."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

# Imported for their registrations: these are the metrics every service's /metrics exposes.
import switchboard_common.instrumentation
import switchboard_common.observability  # noqa: F401

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "switchboard-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
METRIC_NAME = re.compile(r"\bswitchboard_[a-z0-9_]+")
# The series names each metric type exposes (a labelled metric with no child yet has no samples to read).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "gauge": ("",),
}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _graphs(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exposed_series() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_every_metric_a_panel_queries_is_registered() -> None:
    exposed = _exposed_series()
    queried = {
        name: panel["title"]
        for panel in _graphs(_dashboard())
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }

    assert queried, "no switchboard metric found in the dashboard's queries"
    assert {name: title for name, title in queried.items() if name not in exposed} == {}


def test_the_metrics_the_issue_asks_for_are_on_the_dashboard() -> None:
    exprs = " ".join(t["expr"] for p in _graphs(_dashboard()) for t in p["targets"])

    for wanted in (
        "histogram_quantile(0.5, sum by (${by}, route, le) (rate(switchboard_http_request_seconds_bucket",
        "histogram_quantile(0.99, sum by (${by}, route, le) (rate(switchboard_http_request_seconds_bucket",
        "switchboard_http_requests_total",
        "max by (group, topic, partition) (switchboard_consumer_lag)",
        "switchboard_dlq_records_total",
        "switchboard_outbox_backlog",
        "switchboard_outbox_oldest_seconds",
        "histogram_quantile(0.99, sum by (group, le) (rate(switchboard_consumer_batch_records_bucket",
        "histogram_quantile(0.99, sum by (group, le) (rate(switchboard_consumer_batch_seconds_bucket",
        "switchboard_sql_statements_total",
        "switchboard_consumer_stalled",
    ):
        assert wanted in exprs


def test_panels_take_prometheus_from_the_datasource_variable() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["by"]["current"]["value"] in variables["by"]["query"].split(",")
    for panel in _graphs(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_the_layout_is_valid_for_grafana() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]

    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] and dashboard["id"] is None
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
