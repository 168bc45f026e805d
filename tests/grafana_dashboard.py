"""The Grafana dashboard's queries, read the way Grafana runs them (for the file checks and the live test)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Grafana's interval variables, as a fixed duration for promtool (which knows no Grafana variables).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$__interval_ms": "60000",
    "$__range_s": "3600",
    "$__range_ms": "3600000",
}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def graphs(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that query Prometheus (all but rows)."""
    return (panel for panel in panels(dashboard) if panel["type"] != "row")


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for each query of the dashboard, Grafana's variables replaced by durations."""

    def plain(match: re.Match[str]) -> str:
        if match.group(0) not in GRAFANA_VARIABLES:
            raise AssertionError(f"unknown Grafana variable {match.group(0)}")
        return GRAFANA_VARIABLES[match.group(0)]

    found = []
    for panel in graphs(dashboard):
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} query {target.get('refId')}"
            expr = re.sub(r"\$__\w+", plain, target.get("expr", ""))
            assert "$" not in expr and "[[" not in expr, f"{where}: a variable promtool cannot check: {expr}"
            found.append((where, expr))
    return found
