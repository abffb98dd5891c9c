"""A real Prometheus (Debian's /usr/bin/prometheus) on loopback loads deploy/prometheus/rules/,
scrapes a running gateway and evaluates its rules against what the gateway really exports:
quiet on clean traffic, the dead-letter rule pending once a share of the messages is rejected."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from devtools.ports import free_port, wait_for_port
from devtools.processes import stop_process
from tests.conftest import wait_until
from tests.fault_tools import publish

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
HURRIED = "Hurried"  # suffix of the alerts copied with a 2 s `for:`, so a test sees them fire


def hurried_copy(rule_file: Path, alertname: str) -> dict[str, Any]:
    """A rule group holding one alert of `rule_file` as it is, but for 2 s instead of minutes."""
    for group in yaml.safe_load(rule_file.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alertname:
                return {"groups": [{"name": "hurried", "rules": [{**rule, "alert": alertname + HURRIED, "for": "2s"}]}]}
    raise AssertionError(f"{alertname} is not in {rule_file}")


class LocalPrometheus:
    """Prometheus with its own config and data dir under `workdir`, listening on 127.0.0.1 only,
    scraping and evaluating every second so a test sees rules move in seconds."""

    def __init__(self, workdir: Path, gateway_metrics_port: int, hurried: dict[str, Any]) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            pytest.fail("prometheus is not installed: `make system-deps` (Debian's prometheus package) installs it")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "hurried.yml").write_text(yaml.safe_dump(hurried))
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [*(str(p) for p in RULE_FILES), str(workdir / "hurried.yml")],
            "scrape_configs": [{
                "job_name": "citysense-gateway",
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_metrics_port}"]}],
            }],
        }))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalPrometheus:
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=open(self.workdir / "prometheus.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        wait_for_port(self.port, 20)
        wait_until(self.ready, 20, what="prometheus ready")  # it answers 503 until its storage is open
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:  # URLError and HTTPError (503) are OSErrors
            return False

    def stop(self) -> None:
        stop_process(self.proc)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}", timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> dict[str, dict[str, Any]]:
        """alertname -> the active alert (state pending or firing, labels, annotations)."""
        return {a["labels"]["alertname"]: a for a in self.api("alerts")["alerts"]}

    def alert_states(self) -> dict[str, str]:
        return {name: alert["state"] for name, alert in self.alerts().items()}

    def value(self, query: str) -> float | None:
        result = self.api("query?query=" + urllib.parse.quote(query))["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[LocalPrometheus] = []

    def start(gateway_metrics_port: int, hurried: dict[str, Any]) -> LocalPrometheus:
        started.append(LocalPrometheus(tmp_path / "prometheus", gateway_metrics_port, hurried).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def send(mqtt_port: int, seq: int, *, bad: int) -> None:
    """One good reading, and `bad` payloads the gateway dead-letters."""
    ts = int(time.time()) - 60
    good = orjson.dumps({"v": 1, "id": "prom-box-1", "seq": seq, "ts": ts, "m": {"pm25": 7.0}})
    publish(mqtt_port, {"citysense/v1/airbox/prom-box-1/up": [good, *[b"not json"] * bad]})


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_real_prometheus_evaluates_the_rules_on_a_scraped_gateway(
    mosquitto: Any, database_url: str, start_gateway: Any, prometheus_for: Any
) -> None:
    started = time.monotonic()
    metrics_port = free_port()
    start_gateway(mosquitto.url, database_url, CITYSENSE_GATEWAY_METRICS_PORT=str(metrics_port)).wait_subscribed()
    gateway_rules = REPO / "deploy" / "prometheus" / "rules" / "citysense-gateway.yml"
    prom = prometheus_for(metrics_port, hurried_copy(gateway_rules, "CitysenseGatewayDeadLetterRatioHigh"))
    wait_until(lambda: prom.value('up{job="citysense-gateway"}') == 1.0, 20, what="the gateway scraped")
    # before any message: the start-up load reached the database, so it reads as up, not down
    assert prom.value("citysense_gateway_database_up") == 1.0

    # every rule file loaded, and every rule evaluates without an error on real data
    groups = prom.api("rules")["groups"]
    assert {str(p) for p in RULE_FILES} <= {g["file"] for g in groups}
    wait_until(lambda: all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith("20")
                           for g in prom.api("rules")["groups"] for r in g["rules"]), 10, what="rules evaluated")

    # clean traffic: the ratio is 0, and no gateway rule is even pending (the idle database gauge
    # and the connected session gauge included); the evaluator, not scraped here, is absent
    for seq in range(6):
        send(mosquitto.port, seq, bad=0)
        time.sleep(0.5)
    wait_until(lambda: prom.value("job:citysense_gateway_dead_letter_ratio:rate5m") == 0.0, 15,
               what="a dead-letter ratio of 0")
    time.sleep(2)  # two more evaluations
    states = prom.alert_states()
    assert [name for name in states if name.startswith("CitysenseGateway")] == [], states
    assert states.get("CitysenseAlertsEvaluatorAbsent") == "pending", states

    # half the messages dead-lettered: the rule's expression holds (pending: its for: is 15 minutes),
    # and its 2-second copy fires with the annotations rendered from what was scraped
    for seq in range(6, 16):
        send(mosquitto.port, seq, bad=1)
        time.sleep(0.5)
    wait_until(lambda: prom.alert_states().get("CitysenseGatewayDeadLetterRatioHigh") == "pending", 20,
               what="the dead-letter rule pending")
    wait_until(lambda: prom.alert_states().get("CitysenseGatewayDeadLetterRatioHigh" + HURRIED) == "firing", 10,
               what="its 2-second copy firing")
    ratio = prom.value("job:citysense_gateway_dead_letter_ratio:rate5m")
    assert ratio is not None and 0.05 < ratio < 0.6, ratio
    fired = prom.alerts()["CitysenseGatewayDeadLetterRatioHigh" + HURRIED]
    assert fired["labels"]["severity"] == "warning" and fired["labels"]["job"] == "citysense-gateway"
    assert fired["annotations"]["summary"].endswith("% of the gateway's messages are dead-lettered"), fired

    # the broker goes away: the session gauge drops and the broker rule is pending
    mosquitto.stop()
    wait_until(lambda: prom.alert_states().get("CitysenseGatewayBrokerDisconnected") == "pending", 15,
               what="the broker rule pending")
    assert time.monotonic() - started < 75
