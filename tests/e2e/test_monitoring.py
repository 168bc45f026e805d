"""A real Prometheus, loading the alert rules we ship, scrapes a live worker fed a simulated shop: every dashboard
query answers, every record is counted once, the funnel is the worker's table, the dead letters are the replay's,
the shop's 2 % of broken records raises the dead-letter alert and nothing else, and stopping the worker raises
the worker-down alert."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from engine.broker.local import free_port
from engine.loyalty import CustomerState
from engine.offline.simulation import SimulationSpec, simulate
from tests.grafana_dashboard import dashboard_queries
from tests.integration.engine_harness import (
    WorkerProcess,
    engine_env,
    publish_lines,
    replay_of,
    running_workers,
    table_states,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "escalera.json"
STEPS = ("possible", "potential", "buyer", "occasional", "habitual", "exclusive", "propagandist")


class Prometheus:
    """A Prometheus server's HTTP API."""

    def __init__(self, port: int, log: Path) -> None:
        self.url, self.log = f"http://127.0.0.1:{port}", log

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (each with its `metric` labels and `value`)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def value(self, expr: str) -> float:
        (sample,) = self.query(expr)
        return float(sample["value"][1])

    def answering(self) -> bool:
        try:
            self.api("status/buildinfo")
        except OSError:
            return False
        return True


@contextmanager
def running_prometheus(binary: str, workdir: Path, worker_port: int) -> Iterator[Prometheus]:
    """Prometheus with the shipped rules, scraping one worker every second."""
    shutil.copytree(RULES, workdir / "rules")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules" / "*.yml")],
        "scrape_configs": [{"job_name": "escalera", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    command = [
        binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Prometheus(port, log)
    try:
        wait_until(lambda: process.poll() is None and server.answering(), 60, "Prometheus answers", 0.5)
        yield server
    finally:
        process.terminate()
        process.wait(30)


def funnel(server: Prometheus) -> dict[str, float]:
    """The ladder funnel as the dashboard draws it."""
    return {step: server.value(f'sum(escalera_customers{{step="{step}"}}) or vector(0)') for step in STEPS}


def ladder(states: dict[str, CustomerState]) -> dict[str, float]:
    return {step: float(sum(state.step == step for state in states.values())) for step in STEPS}


def ready(worker: WorkerProcess) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:  # not listening yet
        return False


def test_prometheus_scrapes_a_worker_answers_the_dashboard_and_evaluates_the_alerts(
    bootstrap: str, tmp_path: Path, prometheus: str
) -> None:
    lines = list(simulate(SimulationSpec(150, 365, 11, duplicates=0.02, malformed=0.02)))
    reference = replay_of(lines)
    env = engine_env(bootstrap, 4)
    with running_workers(env, tmp_path / "workers") as (worker,):
        wait_until(lambda: ready(worker), 90, "the worker is ready")
        (tmp_path / "prometheus").mkdir()
        with running_prometheus(prometheus, tmp_path / "prometheus", worker.port) as server:
            wait_until(lambda: bool(server.query('up{job="escalera"} == 1')), 30, "the first scrape", 0.5)
            publish_lines(env, lines)  # while Prometheus watches: the rates and latencies have something to show
            # Published live, a customer's events on two topics a second apart may reach the worker in either
            # order (the producer delivers each topic's batches on its own), so the states are compared with the
            # worker's own table here, not with the replay (the integration tests do that, publishing first).
            inbound = 'sum(escalera_events_consumed_total{topic!~".+-internal"})'
            wait_until(lambda: server.query(inbound) and server.value(inbound) == len(lines), 120,
                       "Prometheus counts every published record once", 1)  # fmt: skip
            wait_until(lambda: funnel(server) == ladder(table_states(bootstrap, env)), 60,
                       "the dashboard's funnel is the worker's table", 1)  # fmt: skip
            # every query of the dashboard answers, and none comes back empty
            empty = [where for where, expr in dashboard_queries(json.loads(DASHBOARD.read_text()))
                     if not server.query(expr)]  # fmt: skip
            assert not empty, f"dashboard queries with no data: {empty}"
            assert sum(funnel(server).values()) == len(reference.states)  # the erased are gone, in both
            assert server.value("sum(escalera_dead_letters_total)") == len(reference.rejected) > 0
            assert server.value("sum(rate(escalera_events_consumed_total[1m]))") > 0
            assert (
                0
                < server.value(
                    "histogram_quantile(0.99, sum by (le) (rate(escalera_event_processing_seconds_bucket[1m])))"
                )
                < 1
            )

            # the shipped rules load and evaluate without error; of the alerts, only the dead-letter rate is raised:
            # the shop sent 2 % broken records, over its 1 % threshold (pending for its `for:` time)
            groups = server.api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert {rule["name"] for rule in rules} >= {"EscaleraWorkerDown", "EscaleraConsumerLagGrowing"}
            assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
            raised = {(a["labels"]["alertname"], a["state"]) for a in server.api("alerts")["alerts"]}
            assert raised == {("EscaleraDeadLetterRateHigh", "pending")}
            assert len(reference.rejected) / len(lines) > 0.01

            # the worker stops: its alert is raised at the next evaluation (pending for its `for:` time)
            assert worker.stop() == 0

            def worker_down() -> bool:
                alerts = server.api("alerts")["alerts"]
                return any(a["labels"]["alertname"] == "EscaleraWorkerDown" for a in alerts)

            wait_until(worker_down, 30, "EscaleraWorkerDown is raised", 0.5)
