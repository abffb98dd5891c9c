"""Host-run devices (real app code, fake chips) against a real Mosquitto broker."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hostrun
import paho.mqtt.client as mqtt
import pytest
import sensorconfig
import session as fw_session
from v1_payload import check_v1

from citysense import firmware_cli
from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from tests.receipt_gateway import ReceiptGateway


class Listener:
    """A paho subscriber that records every message under citysense/#."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe("citysense/#", qos=1)
        self.client.loop_start()
        time.sleep(0.2)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def up(self, kind: str, dev: str) -> list[dict[str, Any]]:
        with self.lock:
            msgs = list(self.messages)
        return [check_v1(t, p) for t, p, _ in msgs if t == f"citysense/v1/{kind}/{dev}/up"]

    def wait(self, cond: Any, timeout: float = 15.0) -> bool:
        return hostrun_wait(cond, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def listener(mosquitto: Any) -> Iterator[Listener]:
    lis = Listener(mosquitto.host, mosquitto.port)
    yield lis
    lis.close()


def _items(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for d in docs:
        out += d.get("batch", [d])
    return out


def test_host_airbox_publishes_valid_v1_readings_and_status(mosquitto: Any, listener: Listener, tmp_path: Path) -> None:
    dev = hostrun.HostDevice("airbox", "demo-01", mosquitto.url, 0.2, data_dir=tmp_path, count=4, pms_garbage_every=2)
    dev.start().join(20)
    assert dev.error is None
    assert listener.wait(lambda: len(listener.up("airbox", "demo-01")) >= 4)
    items = _items(listener.up("airbox", "demo-01"))
    assert [i["seq"] for i in items] == [0, 1, 2, 3]
    for item in items:
        assert set(item["m"]) == set(sensorconfig.published_metrics(dev.cfg)) == {"pm1", "pm25", "pm10", "t", "rh"}
        assert item["ts"] > 1_700_000_000
    topic = "citysense/v1/airbox/demo-01/status"
    assert listener.wait(lambda: (topic, b'{"online":false}', False) in listener.messages)
    statuses = [json.loads(p) for t, p, _ in listener.messages if t == topic]
    assert statuses[0]["online"] is True and statuses[0]["reset"] == "power_on" and statuses[0]["fw"]
    assert dev.uart.passive and not dev.uart.awake  # passive mode, asleep between readings


@pytest.mark.parametrize(
    "sensors",
    [{"th_sensor": "bme280"}, {"pm_sensor": "", "th_sensor": "sht31", "extra_sensors": "bme280"}, {"th_sensor": ""}],
    ids=["bme280", "no-pm-sht31-then-bme280", "pm-only"],
)
def test_host_airbox_publishes_the_metrics_its_sensor_configuration_names(
    mosquitto: Any, listener: Listener, tmp_path: Path, sensors: dict[str, object]
) -> None:
    dev = hostrun.HostDevice("airbox", "conf-01", mosquitto.url, 0.2, data_dir=tmp_path, count=2, config=sensors)
    dev.start().join(20)
    assert dev.error is None
    assert listener.wait(lambda: len(_items(listener.up("airbox", "conf-01"))) >= 2)
    expected = set(sensorconfig.published_metrics(dev.cfg))
    assert all(set(item["m"]) == expected for item in _items(listener.up("airbox", "conf-01")))
    assert ("p" in expected) == ("bme280" in str(sensors)) and ("pm25" in expected) == (sensors.get("pm_sensor") != "")


def test_host_airbox_refuses_a_sensor_name_no_driver_has(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'extra_sensors' names 'scd99'; known: sht31, bme280"):
        hostrun.HostDevice("airbox", "conf-02", "mqtt://127.0.0.1:1", data_dir=tmp_path,
                           config={"extra_sensors": "scd99"})


def test_host_parking_sensor_publishes_change_events(mosquitto: Any, listener: Listener, tmp_path: Path) -> None:
    import magtraces

    scenario = magtraces.Scenario("t", 600, seed=5).add_visits(3, 30, 60, 20, start_s=40)
    dev = hostrun.HostDevice(
        "parking", "park-01", mosquitto.url, 10, data_dir=tmp_path, tick_ms=5, scenario=scenario
    ).start()
    try:
        ok = listener.wait(lambda: sum(i.get("ev") == "change" for i in _items(listener.up("parking", "park-01"))) >= 2)
    finally:
        dev.stop()
    assert ok and dev.error is None
    items = _items(listener.up("parking", "park-01"))
    assert items[0]["ev"] == "boot"
    changes = [i for i in items if i["ev"] == "change"]
    assert [c["m"]["occupied"] for c in changes[:2]] == [1, 0]
    assert changes[0]["m"]["mag"] > 12 and changes[0]["m"]["batt_mv"] == 3012


def test_start_host_devices_runs_a_fleet_until_stopped(mosquitto: Any, listener: Listener) -> None:
    handle = firmware_cli.start_host_devices(mosquitto.url, ["fleet-a1", "fleet-a2"], ["fleet-p1"], 0.3)
    try:
        ok = listener.wait(
            lambda: (
                len(listener.up("airbox", "fleet-a1")) >= 2
                and len(listener.up("airbox", "fleet-a2")) >= 2
                and len(listener.up("parking", "fleet-p1")) >= 1
            ),
            timeout=20,
        )
    finally:
        handle.stop()
    assert ok
    assert not handle.running
    assert listener.wait(
        lambda: any(
            t == "citysense/v1/airbox/fleet-a1/status" and p == b'{"online":false}' for t, p, _ in listener.messages
        )
    )


def test_fleet_command_runs_until_sigterm(mosquitto: Any, listener: Listener) -> None:
    assert firmware_cli.fleet_ids(3) == (["fw-airbox-01", "fw-airbox-02"], ["fw-parking-01"])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citysense",
            "firmware",
            "fleet",
            "--count",
            "2",
            "--broker",
            mosquitto.url,
            "--interval",
            "0.3",
        ],
    )
    try:
        ok = listener.wait(lambda: len(listener.up("airbox", "fw-airbox-02")) >= 2, timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert ok and code == 0


def test_device_queues_while_the_broker_is_down_and_replays_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fw_session, "BACKOFF_MAX_MS", 500)
    port = free_port()
    dev = hostrun.HostDevice("airbox", "store-01", f"mqtt://127.0.0.1:{port}", 0.1, data_dir=tmp_path / "dev")
    dev.start()
    try:
        assert hostrun_wait(lambda: len(dev.queue) >= 5)
        broker = LocalMosquitto(tmp_path / "mq", port)
        broker.start()
        try:
            lis = Listener("127.0.0.1", port)
            gateway = ReceiptGateway(port)
            try:
                assert lis.wait(lambda: any("batch" in d for d in lis.up("airbox", "store-01")))
                batch = next(d for d in lis.up("airbox", "store-01") if "batch" in d)
                seqs = [i["seq"] for i in batch["batch"]]
                assert seqs == sorted(seqs) and seqs[0] == 0
                # kept in flash until the gateway's receipt covered it (write ids count from 1)
                assert lis.wait(lambda: dev.queue.settled() >= len(seqs))
                assert any(t == "citysense/v1/airbox/store-01/receipt" for t, _, _ in lis.messages)
            finally:
                gateway.close()
                lis.close()
        finally:
            dev.stop()
            broker.stop()
    finally:
        dev.stop()


def hostrun_wait(cond: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


class RefusingBroker:
    """Accepts TCP and answers every CONNECT with CONNACK 'not authorised' (5)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connects = 0
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(1024)[:1] == b"\x10":
                        self.connects += 1
                        conn.sendall(b"\x20\x02\x00\x05")
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.sock.close()


def test_broker_refusing_credentials_is_logged_and_the_device_keeps_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fw_session, "BACKOFF_MIN_MS", 20)
    monkeypatch.setattr(fw_session, "BACKOFF_MAX_MS", 40)
    broker = RefusingBroker()
    caplog.set_level("INFO", logger="citysense.firmware.host")
    dev = hostrun.HostDevice("airbox", "auth-01", f"mqtt://127.0.0.1:{broker.port}", 0.05, data_dir=tmp_path)
    dev.cfg.update({"auth_max_failures": 3})
    dev.start()
    try:
        assert hostrun_wait(lambda: bool(dev.device.want_setup) and len(dev.queue) >= 3)
    finally:
        dev.stop()
        broker.close()
    assert dev.error is None
    assert broker.connects >= 3
    assert "not authorised" in caplog.text
    assert "setup_mode_wanted" in caplog.text


def _boot_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any], cycles: int) -> None:
    """Run firmware/main.py's main() for `cycles` loop cycles, then shut the device down."""
    import device as fw_device

    (tmp_path / "config.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(firmware_cli.FIRMWARE_DIR))
    try:
        import main as fw_main
    finally:
        sys.path.remove(str(firmware_cli.FIRMWARE_DIR))

    def few_cycles(dev: Any, app: Any, sleep_ms: Any, stop: Any) -> None:
        fw_device.run_loop(dev, app, sleep_ms, stop, max_cycles=cycles)
        dev.service()
        dev.shutdown()

    monkeypatch.setattr(fw_main, "run_loop", few_cycles)
    fw_main.main()


def test_main_py_boots_an_airbox_on_fake_hardware(
    mosquitto: Any, listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """firmware/main.py itself: config -> WiFi -> MQTT -> drivers from machine.UART/I2C -> loop."""
    import fakehw
    import machine

    monkeypatch.setitem(machine.uarts, 1, fakehw.FakePMS5003Uart())
    monkeypatch.setitem(machine.i2c_buses, 0, fakehw.FakeI2C({0x44: fakehw.FakeSHT31()}))
    cfg = {
        "id": "main-01", "kind": "airbox", "wifi_ssid": "x", "mqtt_host": mosquitto.host,
        "mqtt_port": mosquitto.port, "settle_s": 0, "frames": 1, "interval_s": 1, "wdt_ms": 8000,
    }
    _boot_main(tmp_path, monkeypatch, cfg, cycles=2)
    assert listener.wait(lambda: len(listener.up("airbox", "main-01")) >= 2)
    doc = listener.up("airbox", "main-01")[0]
    assert set(doc["m"]) == {"pm1", "pm25", "pm10", "t", "rh"}
    assert (tmp_path / "seq.txt").exists() and (tmp_path / "queue.bin").exists()


def test_main_py_boots_a_parking_sensor_on_fake_hardware(
    mosquitto: Any, listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fakehw
    import machine

    monkeypatch.setitem(machine.i2c_buses, 0, fakehw.FakeI2C({0x0D: fakehw.FakeQMC5883L()}))
    cfg = {
        "id": "main-p1", "kind": "parking", "wifi_ssid": "x", "mqtt_host": mosquitto.host,
        "mqtt_port": mosquitto.port, "sample_ms": 100, "learn_samples": 3,
    }
    _boot_main(tmp_path, monkeypatch, cfg, cycles=6)
    assert listener.wait(lambda: len(listener.up("parking", "main-p1")) >= 1)
    assert listener.up("parking", "main-p1")[0]["ev"] == "boot"
    assert (tmp_path / "baseline.json").exists()
