"""`citysense alerts run` as a process against a real gateway, Mosquitto, PostgreSQL, HTTP and SMTP receivers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from devtools.processes import stop_process
from tests.alerts.receivers import SECRET, add_devices, smtp_server, webhook_receiver
from tests.conftest import REPO, GatewayProcess, count, wait_until

INTERVAL_S = 1.0
K = 3
CYCLE_S = 0.5


class AlertsProcess:
    """`citysense alerts run` in a child process, so a test can kill -9 it between cycles."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citysense", "alerts", "run"],
            env=env,
            cwd=REPO,
            stdout=open(log_path, "ab"),  # noqa: SIM115 - the child keeps it for its life
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cycles(self) -> int:
        return self.log().count("event=alerts_cycle ")

    def wait_cycles(self, n: int, timeout: float = 30) -> None:
        start = self.cycles()
        wait_until(
            lambda: self.cycles() >= start + n, timeout, what=f"{n} evaluation cycles; log: {self.log()[-2000:]}"
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process(self.proc, timeout=10)


StartAlerts = Callable[[], AlertsProcess]


@pytest.fixture
def alerts_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), *sys.path[1:]]),
        CITYSENSE_LOG_LEVEL="INFO",
        CITYSENSE_ALERTS_INTERVAL_S=str(CYCLE_S),
        CITYSENSE_ALERTS_WEBHOOK_SECRET=SECRET,
        CITYSENSE_ALERTS_RETRY_BASE_S="0.2",
        CITYSENSE_ALERTS_EMAIL_DIGEST_S="1",
    )
    yield env


class Box:
    """One air box publishing v1 readings every INTERVAL_S while `running` is set."""

    def __init__(self, broker: LocalMosquitto, device_id: str) -> None:
        self.device_id = device_id
        self.running = threading.Event()
        self.done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.done.is_set():
            if self.running.is_set():
                seq += 1
                payload = {"v": 1, "id": self.device_id, "seq": seq, "ts": int(time.time()), "m": {"pm25": 12.0}}
                self.client.publish(f"citysense/v1/airbox/{self.device_id}/up", orjson.dumps(payload), qos=1)
            self.done.wait(INTERVAL_S)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def newest_reading(url: str, device: str) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(time)) FROM readings WHERE device_id = %s", (device,)
        ).fetchone()
        assert row is not None and row[0] is not None
        return float(row[0])


@pytest.mark.slow
def test_silent_box_alerted_by_webhook_and_email_in_time_and_resolved_across_evaluator_kills(
    database_url: str,
    mosquitto: LocalMosquitto,
    start_gateway: Callable[..., GatewayProcess],
    alerts_env: dict[str, str],
    tmp_path: Path,
) -> None:
    device = "tp-box-01"
    add_devices(database_url, [(device, "School A", 25.03, 121.55)])
    rules = tmp_path / "rules.toml"
    metrics_port = free_port()
    with webhook_receiver() as hook, smtp_server(tmp_path) as mailbox:
        rules.write_text(
            f'version = "e2e-1"\n[device_silent]\nk = {K}\n[[webhooks]]\nurl = "{hook.url}"\n'
            '[[overrides]]\nschool = "School A"\nemail = ["head@school-a.example"]\n'
        )
        env = {
            **alerts_env,
            "CITYSENSE_DATABASE_URL": database_url,
            "CITYSENSE_MQTT_URL": mosquitto.url,
            "CITYSENSE_ALERTS_RULES_FILE": str(rules),
            "CITYSENSE_ALERTS_SMTP_URL": mailbox.url,
            "CITYSENSE_ALERTS_SMTP_CA_FILE": str(mailbox.ca_file),
            "CITYSENSE_ALERTS_METRICS_PORT": str(metrics_port),
        }
        start_gateway(mosquitto.url, database_url).wait_subscribed()
        box = Box(mosquitto, device)
        started: list[AlertsProcess] = []

        def start_alerts() -> AlertsProcess:
            started.append(AlertsProcess(env, tmp_path / f"alerts-{len(started)}.log"))
            return started[-1]

        try:
            box.running.set()
            wait_until(
                lambda: (
                    count(database_url, "SELECT count(DISTINCT time) FROM readings WHERE device_id = %s", device) >= 6
                ),
                30,
                what="six readings stored",
            )
            evaluator = start_alerts()
            evaluator.wait_cycles(2)
            assert hook.accepted() == []

            box.running.clear()  # the box goes silent
            time.sleep(INTERVAL_S * 1.5)
            last = newest_reading(database_url, device)
            wait_until(lambda: hook.accepted("device_silent", "opened"), 30, what="silent alert on the webhook")
            delay = hook.accepted("device_silent", "opened")[0].at - last
            # k x interval + one cycle, plus the worker's poll (0.5 s) and the readings' whole-second ts
            print(f"silent -> webhook delay {delay:.2f} s")
            assert K * INTERVAL_S < delay <= K * INTERVAL_S + CYCLE_S + 0.5 + 1.0, delay
            wait_until(
                lambda: any("device_silent" in str(m.get_payload()) for m in mailbox.to("head@school-a.example")),
                15,
                what="silent alert by e-mail",
            )

            evaluator.kill()  # kill -9 between cycles, then a new evaluator: nothing sent twice
            evaluator = start_alerts()
            evaluator.wait_cycles(3)
            assert len(hook.accepted("device_silent", "opened")) == 1
            evaluator.kill()

            box.running.set()  # the box comes back while no evaluator runs
            wait_until(lambda: newest_reading(database_url, device) > last + 1, 15, what="the box back")
            evaluator = start_alerts()
            wait_until(lambda: hook.accepted("device_silent", "resolved"), 30, what="resolved on the webhook")
            evaluator.wait_cycles(3)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        finally:
            box.close()
            for process in started:
                process.stop()
        assert len(hook.accepted("device_silent", "opened")) == 1
        assert len(hook.accepted("device_silent", "resolved")) == 1
        assert all(d.signature_ok() for d in hook.accepted())
        assert count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'device_silent'") == 1
        assert (
            count(database_url, "SELECT count(*) FROM alerts WHERE rule = 'device_silent' AND state = 'resolved'") == 1
        )
        assert 'citysense_alerts_transitions_total{rule="device_silent",to="resolved"} 1.0' in metrics
        for name in (
            "citysense_alerts_open{",
            "citysense_alerts_evaluation_seconds_bucket",
            "citysense_alerts_last_evaluation_timestamp_seconds",
            "citysense_alerts_delivery_failures_total",
        ):
            assert name in metrics, name
