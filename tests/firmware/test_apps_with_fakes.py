"""The air-box and parking applications' loops with fake chips and a fake MQTT client (no broker)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import fakehw
import log
import pytest
from airbox.app import AirBox
from clock import Clock
from config import Config
from device import Device, run_loop
from drivers.pms5003 import PMS5003
from drivers.sht31 import SHT31
from flashqueue import FlashQueue
from sensorconfig import Attached
from seq import SeqCounter
from session import Session
from v1_payload import check_v1
from watchdog import reset_cause


class FakeClient:
    """Stands in for umqtt.simple.MQTTClient; records publishes, can refuse or drop."""

    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, client_id: str, server: str, **kwargs: Any) -> None:
        self.published: list[tuple[str, bytes, bool]] = []
        self.will: tuple[Any, ...] = ()
        self.subscribed: list[str] = []
        self.inbox: list[tuple[bytes, bytes]] = []
        self.kwargs = kwargs
        FakeClient.instances.append(self)

    def set_callback(self, cb: Any) -> None:
        self.cb = cb

    def set_last_will(self, topic: str, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        self.will = (topic, msg, retain, qos)

    def connect(self) -> bool:
        return False

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.append(topic)

    def check_msg(self) -> None:
        while self.inbox:
            self.cb(*self.inbox.pop(0))

    def ping(self) -> None:
        pass

    def publish(self, topic: str, msg: Any, retain: bool = False, qos: int = 0) -> None:
        assert qos == 1
        self.published.append((topic, msg.encode() if isinstance(msg, str) else msg, retain))

    def disconnect(self) -> None:
        pass


class Dog:
    def __init__(self) -> None:
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(log, "sink", seen.append)
    return seen


def _airbox(tmp_path: Path, uart: Any = None, sht: Any = None) -> tuple[AirBox, Device, Any, Any, Dog]:
    FakeClient.instances.clear()
    cfg = Config(str(tmp_path / "config.json"))
    cfg.update({"id": "box-01", "wifi_ssid": "x", "mqtt_host": "h", "settle_s": 0, "frames": 3})
    session = Session(FakeClient, "box-01", "airbox", "h", password="tok")
    dog = Dog()
    device = Device(
        cfg, session, FlashQueue(str(tmp_path / "q.bin"), 64), SeqCounter(str(tmp_path / "seq")), Clock(), dog, "wdt"
    )
    uart = uart or fakehw.FakePMS5003Uart()
    sht = sht or fakehw.FakeSHT31()
    app = AirBox(
        device,
        cfg,
        PMS5003(uart, lambda ms: None),
        [Attached("sht31", SHT31(fakehw.FakeI2C({0x44: sht}), lambda ms: None), ("t", "rh"))],
        frame_gap_ms=0,
        interval_ms=0,
    )
    return app, device, uart, sht, dog


def _ups(client: FakeClient) -> list[dict[str, Any]]:
    return [check_v1(t, p) for t, p, _ in client.published if t.endswith("/up")]


def test_airbox_loop_publishes_averaged_readings_with_device_credentials(tmp_path: Path, lines: list[str]) -> None:
    app, device, uart, _, dog = _airbox(tmp_path)
    run_loop(device, app, lambda ms: None, max_cycles=3)
    client = FakeClient.instances[-1]
    assert client.kwargs["user"] == "box-01" and client.kwargs["password"] == "tok"
    assert client.will == ("citysense/v1/airbox/box-01/status", b'{"online":false}', True, 1)
    assert client.subscribed == ["citysense/v1/airbox/box-01/config", "citysense/v1/airbox/box-01/receipt"]
    ups = _ups(client)
    assert [u["seq"] for u in ups] == [0, 1, 2]
    assert set(ups[0]["m"]) == {"pm1", "pm25", "pm10", "t", "rh"}
    status = json.loads(next(p for t, p, r in client.published if t.endswith("/status") and r))
    assert status["online"] is True and status["reset"] == "wdt" and status["queued"] == status["unconfirmed"]
    assert uart.requests == 9 and not uart.awake  # 3 frames per reading, asleep in between
    assert dog.feeds > 0


def test_airbox_keeps_publishing_pm_when_the_sht31_stops_answering(tmp_path: Path, lines: list[str]) -> None:
    app, device, _, sht, _ = _airbox(tmp_path)
    sht.fail = True
    run_loop(device, app, lambda ms: None, max_cycles=2)
    ups = _ups(FakeClient.instances[-1])
    assert len(ups) == 2 and set(ups[0]["m"]) == {"pm1", "pm25", "pm10"}
    assert any("sht31_read_failed" in line and "no ACK" in line for line in lines)
    assert device.errors == 2


def test_airbox_keeps_publishing_t_rh_when_the_pm_sensor_goes_silent(tmp_path: Path, lines: list[str]) -> None:
    app, device, uart, _, _ = _airbox(tmp_path)
    uart.fail = True
    run_loop(device, app, lambda ms: None, max_cycles=3)
    ups = _ups(FakeClient.instances[-1])
    assert len(ups) == 3 and set(ups[0]["m"]) == {"t", "rh"}
    assert sum("event=pm_no_data" in line for line in lines) == 3
    assert app.pm_misses == 3


def test_airbox_reads_through_garbage_and_split_frames_on_the_uart(tmp_path: Path, lines: list[str]) -> None:
    uart = fakehw.FakePMS5003Uart(garbage_every=1, split=True)
    app, device, _, _, _ = _airbox(tmp_path, uart=uart)
    run_loop(device, app, lambda ms: None, max_cycles=2)
    ups = _ups(FakeClient.instances[-1])
    assert len(ups) == 2 and "pm25" in ups[1]["m"]


def test_an_exception_in_the_app_never_stops_the_loop(tmp_path: Path, lines: list[str]) -> None:
    app, device, _, _, _ = _airbox(tmp_path)
    calls = {"n": 0}
    real_tick = app.tick

    def flaky_tick() -> int:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("boom")
        return int(real_tick())

    app.tick = flaky_tick  # type: ignore[method-assign]
    run_loop(device, app, lambda ms: None, max_cycles=3)
    assert any("event=app_error" in line and "boom" in line for line in lines)
    assert len(_ups(FakeClient.instances[-1])) == 3


def test_remote_config_changes_the_interval_and_is_reported_in_status(tmp_path: Path, lines: list[str]) -> None:
    app, device, _, _, _ = _airbox(tmp_path)
    device.on_config = app.reconfigure
    device.service()
    client = FakeClient.instances[-1]
    client.inbox.append((b"citysense/v1/airbox/box-01/config", b'{"version": 7, "interval_s": 300, "frames": 2}'))
    device.service()
    assert device.cfg["interval_s"] == 300 and device.cfg["frames"] == 2
    assert app.interval_ms is None
    status = json.loads([p for t, p, _ in client.published if t.endswith("/status")][-1])
    assert status["cfg"] == 7
    client.inbox.append((b"citysense/v1/airbox/box-01/config", b'{"version": 8, "interval_s": "soon"}'))
    device.service()
    status = json.loads([p for t, p, _ in client.published if t.endswith("/status")][-1])
    assert status["cfg"] == 7 and "interval_s" in status["cfg_error"]


def test_readings_go_to_flash_while_offline_and_replay_as_one_batch(tmp_path: Path, lines: list[str]) -> None:
    app, device, _, _, _ = _airbox(tmp_path)
    device.session.connect = lambda: False  # type: ignore[method-assign]
    run_loop(device, app, lambda ms: None, max_cycles=4)
    assert len(device.queue) == 4
    del device.session.connect
    device.session.last_try_ms = None
    device.service()
    client = FakeClient.instances[-1]
    ups = _ups(client)
    assert len(ups) == 1 and [i["seq"] for i in ups[0]["batch"]] == [0, 1, 2, 3]
    assert len(device.queue) == 4  # kept until the gateway's receipt covers them
    client.inbox.append((b"citysense/v1/airbox/box-01/receipt", b'{"seq": 3}'))
    device.service()
    assert len(device.queue) == 0


def test_reset_cause_names_the_watchdog() -> None:
    import machine

    class M:
        PWRON_RESET, WDT_RESET = 1, 3

        @staticmethod
        def reset_cause() -> int:
            return 3

    assert reset_cause(M) == "wdt"
    assert reset_cause(machine) == "power_on"
    assert reset_cause(None) == "unknown"


def test_clock_sends_ts_zero_until_ntp_has_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    import clock

    class Time2000:
        """An RTC that was never set: shortly after the epoch."""

        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def time() -> float:
            return 1234.0

    class Ntp:
        calls = 0

        @classmethod
        def settime(cls) -> None:
            cls.calls += 1
            if cls.calls == 1:
                raise OSError(110, "ETIMEDOUT")

    monkeypatch.setattr(clock, "time", Time2000)
    c = clock.Clock(Ntp)
    assert c.unix() == 0
    assert c.sync() is False and c.unix() == 0
    assert c.sync() is True and c.unix() == 1234


def _parking(tmp_path: Path, samples: Any) -> tuple[Any, Device]:
    from drivers.qmc5883l import QMC5883L
    from parking.app import ParkingSensor

    FakeClient.instances.clear()
    cfg = Config(str(tmp_path / "config.json"))
    cfg.update({"id": "bay-01", "kind": "parking", "wifi_ssid": "x", "mqtt_host": "h", "learn_samples": 5})
    session = Session(FakeClient, "bay-01", "parking", "h")
    device = Device(
        cfg, session, FlashQueue(str(tmp_path / "q.bin"), 64), SeqCounter(str(tmp_path / "seq")), Clock(), Dog()
    )
    chip = fakehw.FakeQMC5883L(iter(samples))
    app = ParkingSensor(
        device, cfg, QMC5883L(fakehw.FakeI2C({0x0D: chip})), lambda: 2950, str(tmp_path / "baseline.json"), tick_ms=0
    )
    return app, device


EMPTY, CAR = (30.0, -20.1, -26.2), (30.0, 9.9, -26.2)  # Taipei's field for a flat sensor; a car adds 30 uT


def _manoeuvre(a: tuple[float, ...], b: tuple[float, ...]) -> list[tuple[float, float, float]]:
    """Eight samples swinging between two fields, as a car driving in or out makes them."""
    out = []
    for i in range(8):
        f = 0.2 + 0.1 * i + (0.5 if i % 2 else -0.3)
        out.append((a[0] + (b[0] - a[0]) * f + 6.0 * (i % 3), a[1] + (b[1] - a[1]) * f, a[2] - 3.0 * (i % 2)))
    return out


def test_parking_publishes_boot_and_change_events_at_once(tmp_path: Path, lines: list[str]) -> None:
    samples = [EMPTY] * 20 + _manoeuvre(EMPTY, CAR) + [CAR] * 20 + _manoeuvre(CAR, EMPTY) + [EMPTY] * 20
    app, device = _parking(tmp_path, samples)
    run_loop(device, app, lambda ms: None, max_cycles=len(samples))
    ups = _ups(FakeClient.instances[-1])
    assert [(u["ev"], u["m"]["occupied"]) for u in ups] == [("boot", 0), ("change", 1), ("change", 0)]
    assert ups[1]["m"]["batt_mv"] == 2950 and ups[1]["m"]["mag"] > 25


def test_parking_status_reports_baseline_age_confidence_and_relearning(tmp_path: Path, lines: list[str]) -> None:
    app, device = _parking(tmp_path, [EMPTY] * 40)
    run_loop(device, app, lambda ms: None, max_cycles=40)
    statuses = [json.loads(p) for t, p, _ in FakeClient.instances[-1].published if t.endswith("/status")]
    first, last = statuses[0], statuses[-1]
    assert first["base_age_s"] is None and first["relearn"] is True and first["conf"] == 0.0
    assert last["online"] is True and last["base_age_s"] == 0 and 0.5 <= last["conf"] <= 1.0
    assert last["relearn"] is True  # learnt at first boot: unconfirmed until a car has come and gone


def test_parking_saves_the_snapshot_when_the_detector_re_decides_the_bay_without_a_change(
    tmp_path: Path, lines: list[str]
) -> None:
    app, device = _parking(tmp_path, [EMPTY] * 12)
    run_loop(device, app, lambda ms: None, max_cycles=10)
    saved = tmp_path / "baseline.json"
    saved.unlink()
    app.detector.save_due = True  # as after a first-boot guess given up while the state stays
    run_loop(device, app, lambda ms: None, max_cycles=11)  # one more sample, no change of state
    assert saved.exists() and not app.detector.save_due


def test_parking_reboot_with_a_car_on_the_bay_uses_the_saved_baseline(tmp_path: Path, lines: list[str]) -> None:
    app, device = _parking(tmp_path, [EMPTY] * 10)
    run_loop(device, app, lambda ms: None, max_cycles=10)
    assert (tmp_path / "baseline.json").exists()
    app2, device2 = _parking(tmp_path, [CAR] * 20)  # power cut, car arrives, device boots again
    run_loop(device2, app2, lambda ms: None, max_cycles=20)
    client = FakeClient.instances[-1]
    first = _ups(client)[0]
    assert "batch" in first  # first the last boot's readings, never confirmed by a receipt
    client.inbox.append((b"citysense/v1/parking/bay-01/receipt", b'{"seq": %d}' % first["batch"][-1]["seq"]))
    device2.service()  # the gateway confirms them: what waited behind them goes out
    items = [i for u in _ups(client) for i in u.get("batch", [u])]
    assert ("boot", 1) in [(i["ev"], i["m"]["occupied"]) for i in items]  # the boot message carries the car
