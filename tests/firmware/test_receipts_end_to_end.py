"""A broker crash loses nothing end to end: 20 air boxes running the real firmware, the real
gateway and PostgreSQL, and a Mosquitto killed with SIGKILL mid-stream.

Mosquitto saves its state only every autosave interval (here: never before the crash), so
the readings it had acknowledged but not saved die with it. The devices keep every reading
in flash until the gateway's commit receipt covers it, and resend the rest after the broker
is back; the database's unique key keeps each once. Every reading a device made must be
stored, exactly once, and covered by a receipt.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import device as fw_device
import hostrun
import psycopg
import pytest
import session as fw_session

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from tests.conftest import count, wait_until

DEVICES = 20
READINGS = 25  # one a second each


def _where(dev: hostrun.HostDevice) -> str:
    """Where a device's thread is (a hang must say where it hangs), with its last counters."""
    frame = sys._current_frames().get(dev.thread.ident or -1)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)\n"
    return f"{dev.device_id}: cycles={dev.app.cycles} queued={len(dev.queue)}\n{stack}"


@pytest.mark.slow
def test_broker_sigkill_mid_stream_loses_and_duplicates_no_reading_of_real_firmware_devices(
    tmp_path: Path, database_url: str, start_gateway: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="citysense.firmware.host")
    monkeypatch.setattr(fw_session, "BACKOFF_MAX_MS", 1000)
    made: list[tuple[str, int, int]] = []  # (device, seq, ts) of every reading a device made
    lock = threading.Lock()
    real_item = fw_device.Device.item

    def recording_item(self: Any, m: dict[str, int | float], ev: str | None = None) -> str:
        text: str = real_item(self, m, ev)
        doc = json.loads(text)
        with lock:
            made.append((self.id, doc["seq"], doc["ts"]))
        return text

    monkeypatch.setattr(fw_device.Device, "item", recording_item)
    port = free_port()
    broker = LocalMosquitto(tmp_path / "mq", port, extra_config="autosave_interval 3600\nallow_anonymous true\n")
    broker.start()
    start_gateway(broker.url, database_url, CITYSENSE_RECEIPT_INTERVAL_S="1").wait_subscribed()
    devices = [
        hostrun.HostDevice("airbox", f"e2e-box-{i:02d}", broker.url, 1.0, data_dir=tmp_path / f"dev{i}",
                           count=READINGS, receipt_timeout_s=5, drain_s=90)
        for i in range(DEVICES)
    ]
    try:
        for dev in devices:
            dev.start()
        wait_until(lambda: count(database_url, "SELECT count(DISTINCT device_id) FROM readings") == DEVICES, 30,
                   what="every device stored")
        time.sleep(4.0)  # mid-stream: readings in flight, acknowledged by the broker, some not yet committed
        at_kill = count(database_url, "SELECT count(*) FROM readings WHERE metric = 'pm25'")
        broker.kill()
        time.sleep(2.0)  # the devices go on measuring into their flash queues
        broker.start()
        for dev in devices:
            dev.join(120)
        stuck = [dev for dev in devices if dev.thread.is_alive()]
        assert not stuck, "a device did not see all its readings confirmed:\n" + "".join(_where(dev) for dev in stuck)
    finally:
        for dev in devices:
            dev.stop()
        broker.stop()
    assert 0 < at_kill < DEVICES * READINGS, "the broker was killed before or after the stream: proves nothing"
    assert len(made) == DEVICES * READINGS
    # the unique key is (device, metric, second): two readings a device made within one second
    # (a loop turn starved of CPU catching up; 5-31 of 500 here) are one reading by the contract
    expected = {(d, ts) for d, _seq, ts in made}
    assert len(expected) >= DEVICES * READINGS // 2, "the devices' clock did not advance"
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT device_id, extract(epoch FROM time)::bigint FROM readings WHERE metric = 'pm25'")
        rows = [(r[0], int(r[1])) for r in stored]
    assert len(rows) == len(set(rows)), "a reading stored twice"
    lost, extra = sorted(expected - set(rows)), sorted(set(rows) - expected)
    assert not lost and not extra, f"lost: {lost[:10]}, not made by any device: {extra[:10]}"
    assert "event=resend" in caplog.text  # the devices did resend what the crash took
    for dev in devices:
        assert dev.error is None
        assert len(dev.queue) == 0 and dev.device.unconfirmed() == 0  # every reading covered by a receipt
    print(f"{len(made)} readings ({len(expected)} distinct seconds) of {DEVICES} devices, broker killed at "
          f"{at_kill} stored: all stored once")
