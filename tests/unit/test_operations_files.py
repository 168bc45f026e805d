"""The operators' files are sound: Prometheus' configuration, the alerting rules and their unit tests, and Grafana's
provisioning and dashboard, all checked by promtool and against the metrics a worker really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from engine.loyalty import load_policy
from engine.stream.metrics import ConsumerLagCollector, CustomersCollector, RestoreCollector, WorkerMetrics
from tests.grafana_dashboard import dashboard_queries, graphs, panels

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES_DIR = PROMETHEUS / "rules"
RULES = RULES_DIR / "escalera-alerts.yml"
RULE_TESTS = PROMETHEUS / "tests" / "escalera-alerts.test.yml"
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "escalera.yml"
DASHBOARD = GRAFANA / "dashboards" / "escalera.json"
RULES_MOUNT = "/etc/prometheus/rules/"  # where docker-compose.yml mounts deploy/prometheus/rules/
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"  # where docker-compose.yml mounts deploy/grafana/dashboards/

# Series Prometheus makes itself for each scrape target, not exposed by the worker.
SCRAPE_SERIES = frozenset({"up"})
STRING_LITERAL = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")  # not the tail of a number, duration or variable
SEVERITIES = {"warning", "critical"}


# ---- helpers -------------------------------------------------------------------------------------------------


def run(promtool: str, *args: str | Path) -> str:
    """Run promtool; fail with its whole output unless it exits 0. Return its output."""
    command = [str(promtool), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{' '.join(command)}` exited {result.returncode}:\n{output}"
    return output


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers outside string literals that are Escalera's, the worker
    process', Prometheus' `up`, or recorded series (with a colon). Functions, keywords and labels are none of
    these."""
    bare = STRING_LITERAL.sub('""', expr)
    return {
        name
        for name in IDENTIFIER.findall(bare)
        if name.startswith(("escalera_", "process_")) or ":" in name or name in SCRAPE_SERIES
    }


def unknown_metrics(queries: Iterable[tuple[str, str]], known: Iterable[str]) -> dict[str, set[str]]:
    """Per query, the metric names it reads that nothing provides."""
    allowed = set(known)
    found = {where: metric_names(expr) - allowed for where, expr in queries}
    return {where: names for where, names in found.items() if names}


@pytest.fixture(scope="module")
def exposition() -> str:
    """What a worker's /metrics shows, from the real metric objects, each labelled metric counted once."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.consumed("purchases", "purchase.completed", "applied")
    metrics.rejected("purchases", "invalid_json")  # also a dead letter
    metrics.processing.observe(0.001)
    metrics.lag.observe(1.0)
    metrics.transitions.labels("step", "none", "buyer").inc()
    metrics.perks.labels("welcome_offer", "granted").inc()
    metrics.late.labels("purchases").inc()
    counts = SimpleNamespace(
        steps=Counter({"buyer": 1}),
        relationships=Counter({"unknown": 1}),
        satisfaction=Counter({"satisfied": 1}),
        formal_complaints=1,
    )
    registry.register(CustomersCollector(lambda: [counts], load_policy(None).operations))
    registry.register(ConsumerLagCollector(lambda: [("purchases", 0, 3)]))
    # a restore that took 2 s is over (Faust's recovery keeps its monotonic start and end)
    recovery = SimpleNamespace(in_recovery=False, _recovery_started_at=1.0, _recovery_ended_at=3.0)
    registry.register(RestoreCollector(lambda: recovery))
    ProcessCollector(registry=registry)  # as the worker registers it (reads /proc: Linux)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def exposed(exposition: str) -> frozenset[str]:
    """The names of the series Prometheus stores from a scrape: the exposition's sample names. Exact names, not
    families: a histogram is read as escalera_..._bucket, _sum or _count, and its bare family name, like a
    counter's name without _total, would select nothing."""
    samples = (line for line in exposition.splitlines() if line and not line.startswith("#"))
    return frozenset(re.split(r"[{ ]", line, maxsplit=1)[0] for line in samples)


@pytest.fixture(scope="module")
def known(exposed: frozenset[str]) -> frozenset[str]:
    return exposed | SCRAPE_SERIES | recorded_names()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


# ---- Prometheus ----------------------------------------------------------------------------------------------


def test_the_worker_exposes_what_the_checks_below_rely_on(exposed: frozenset[str]) -> None:
    relied_on = [
        "escalera_events_consumed_total",
        "escalera_event_processing_seconds_bucket",
        "escalera_customers",
        "escalera_consumer_lag_records",
        "escalera_dead_letters_total",
        "escalera_table_restore_seconds",
        "escalera_table_restore_in_progress",
        "process_cpu_seconds_total",
    ]
    for name in relied_on:
        assert name in exposed, f"{name} not in a worker's exposition: {sorted(exposed)}"


def test_prometheus_config_is_valid_with_the_rules_it_loads(promtool: str, tmp_path: Path) -> None:
    # The file as shipped, syntax only: in full, promtool would read the rules under /etc/prometheus/rules/ on this
    # machine (an absolute glob that matches nothing passes silently, whatever is wrong with our rules).
    run(promtool, "check", "config", "--syntax-only", CONFIG)
    # In full, with the rules where the compose file mounts them: a copy whose rule_files glob points at a copy of
    # deploy/prometheus/rules/. This checks the config and every rule file its glob loads, as Prometheus would.
    text = CONFIG.read_text()
    entry = f"- {RULES_MOUNT}*.yml\n"
    assert text.count(entry) == 1, f"rule_files should hold `{entry.strip()}` once"
    mounted = tmp_path / "rules"
    shutil.copytree(RULES_DIR, mounted)
    copy = tmp_path / "prometheus.yml"
    copy.write_text(text.replace(entry, f"- {mounted}/*.yml\n"))
    output = run(promtool, "check", "config", "--lint=all", "--lint-fatal", copy)
    for rules in RULES_DIR.glob("*.yml"):
        assert str(mounted / rules.name) in output, f"the rule_files glob did not load {rules.name}:\n{output}"


def test_prometheus_scrapes_both_workers_and_loads_the_mounted_rules() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == [f"{RULES_MOUNT}*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    escalera = jobs["escalera"]
    assert escalera.get("metrics_path", "/metrics") == "/metrics"
    assert [target for static in escalera["static_configs"] for target in static["targets"]] == [
        "worker-1:6066",
        "worker-2:6066",
    ]
    assert [target for static in jobs["prometheus"]["static_configs"] for target in static["targets"]] == [
        "localhost:9090"
    ]


def test_rules_are_valid(promtool: str) -> None:
    for rules in sorted(RULES_DIR.glob("*.yml")):
        run(promtool, "check", "rules", "--lint=all", "--lint-fatal", rules)


def test_alerts_pass_their_unit_tests(promtool: str) -> None:
    run(promtool, "test", "rules", RULE_TESTS)


def test_every_alert_is_complete_and_tested_both_ways() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), f"an alert name is used twice: {names}"
    assert {group["name"] for group in rule_groups()} >= {"escalera"}
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity not one of {SEVERITIES}"
        assert {"summary", "description", "runbook"} <= set(rule.get("annotations", {})), f"{name}: annotations"
        assert any(c["alertname"] == name and c.get("exp_alerts") for c in checks), f"{name}: no case that fires"
        assert any(c["alertname"] == name and not c.get("exp_alerts") for c in checks), f"{name}: no quiet case"
    unknown = {check["alertname"] for check in checks} - set(names)
    assert not unknown, f"tests of alerts that do not exist: {unknown}"


def test_the_unit_tests_catch_a_changed_threshold(promtool: str, tmp_path: Path) -> None:
    """The dead-letter alert's tests, run against rules with its threshold moved from 1% to 3%, fail."""
    text = RULES.read_text()
    assert text.count("  ) > 0.01\n") == 1
    rules = tmp_path / "rules.yml"
    rules.write_text(text.replace("  ) > 0.01\n", "  ) > 0.03\n"))
    suite = yaml.safe_load(RULE_TESTS.read_text())
    suite["rule_files"] = [str(rules)]
    suite["tests"] = [
        test for test in suite["tests"]
        if any(check["alertname"] == "EscaleraDeadLetterRateHigh" for check in test.get("alert_rule_test", []))
    ]  # fmt: skip
    assert suite["tests"]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(suite))
    with pytest.raises(AssertionError, match="EscaleraDeadLetterRateHigh"):
        run(promtool, "test", "rules", broken)
    suite["rule_files"] = [str(RULES)]  # the same cases pass against the real rules
    broken.write_text(yaml.safe_dump(suite))
    run(promtool, "test", "rules", broken)


def test_rules_read_only_metrics_a_worker_exposes(known: frozenset[str]) -> None:
    queries = [
        (rule.get("alert") or rule["record"], rule["expr"]) for group in rule_groups() for rule in group["rules"]
    ]
    unknown = unknown_metrics(queries, known)
    assert not unknown, f"metrics no worker exposes: {unknown}"


# ---- Grafana -------------------------------------------------------------------------------------------------


def test_grafana_provisions_the_prometheus_data_source_and_the_dashboards() -> None:
    datasources = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert (source["name"], source["uid"], source["type"]) == ("Prometheus", "prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    providers = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == [DASHBOARDS_MOUNT]
    assert all(provider["type"] == "file" for provider in providers)


def test_the_dashboard_is_one_well_formed_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert [path.name for path in DASHBOARD.parent.glob("*.json")] == ["escalera.json"]
    assert (dashboard["uid"], dashboard["title"]) == ("escalera", "Escalera")
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["refresh"] == "30s"
    assert dashboard["time"]["from"] == "now-6h"
    ids = [panel["id"] for panel in panels(dashboard)]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not duplicates, f"panel ids used more than once: {duplicates}"
    uid = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["uid"]
    for panel in graphs(dashboard):
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel.get("datasource", {}).get("uid") == uid, f"{where}: data source is not uid {uid}"
        targets = panel.get("targets", [])
        assert targets, f"{where}: no query"
        for target in targets:
            assert target.get("datasource", {"uid": uid}).get("uid") == uid, f"{where}: a query's data source"
            assert target.get("expr", "").strip(), f"{where}: an empty query"
        refs = [target.get("refId") for target in targets]
        assert len(refs) == len(set(refs)), f"{where}: refIds {refs}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{where}: wider than the dashboard"


def test_the_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    # promtool parses PromQL only in rule files: each query becomes a recording rule, named after its panel.
    queries = dashboard_queries(dashboard)
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    try:
        run(promtool, "check", "rules", "--lint=none", path)
    except AssertionError as error:
        failed = sorted({int(n) for n in re.findall(r'"dashboard:query_(\d+)"', str(error))})
        named = "\n".join(f"dashboard:query_{n} is {queries[n][0]}: {queries[n][1]}" for n in failed)
        raise AssertionError(f"{error}\n{named}") from None


def test_the_dashboard_rates_follow_the_scrape_interval(dashboard: dict[str, Any]) -> None:
    for panel in graphs(dashboard):
        for target in panel["targets"]:
            fixed = re.findall(r"\[\d+[smhdwy]\]", target["expr"])
            assert not fixed, f"panel {panel['title']!r}: fixed range {fixed}; use [$__rate_interval]"


def test_the_dashboard_reads_only_metrics_a_worker_exposes(dashboard: dict[str, Any], known: frozenset[str]) -> None:
    unknown = unknown_metrics(dashboard_queries(dashboard), known)
    assert not unknown, f"metrics no worker exposes: {unknown}"


def test_the_dashboard_shows_every_metric_a_worker_exposes(dashboard: dict[str, Any], exposition: str) -> None:
    families = {
        line.split()[2]
        for line in exposition.splitlines()
        if line.startswith("# TYPE escalera_") and not line.split()[2].endswith("_created")  # when counting began
    }
    read = set().union(*(metric_names(expr) for _, expr in dashboard_queries(dashboard)))
    missing = {
        family for family in families if not any(name.startswith(family) for name in read)
    }  # fmt: skip
    assert not missing, f"exposed but on no panel: {sorted(missing)}"


def test_the_metric_check_reports_names_no_worker_exposes(dashboard: dict[str, Any], known: frozenset[str]) -> None:
    made_up = json.loads(json.dumps(dashboard))
    panel = next(graphs(made_up))
    panel["targets"].append(
        {"refId": "Z", "expr": 'sum(rate(escalera_perks_grnated_total{perk="escalera_customers"}[$__rate_interval]))'}
    )
    unknown = unknown_metrics(dashboard_queries(made_up), known)
    assert unknown == {f"panel {panel['id']} {panel['title']!r} query Z": {"escalera_perks_grnated_total"}}
    # a histogram's family name and a counter without _total select nothing; label values are not names
    queries = [
        ("a", "histogram_quantile(0.99, sum by (le) (rate(escalera_event_processing_seconds[5m])))"),
        ("b", "sum(rate(escalera_events_consumed[5m:1m]))"),
        ("c", 'sum(escalera_customers{step="escalera_nothing"}) / 1e3 or vector(0) offset 1d'),
        ("d", "deriv(topic:escalera_consumer_lag_records:sum[10m]) > 0 and topic:nothing_recorded:sum"),
    ]
    assert unknown_metrics(queries, known) == {
        "a": {"escalera_event_processing_seconds"},
        "b": {"escalera_events_consumed"},
        "d": {"topic:nothing_recorded:sum"},
    }
