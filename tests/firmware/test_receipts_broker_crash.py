"""A broker crash loses no reading: host-run firmware devices keep each reading until a receipt covers it.

Three real air boxes (host runner, fake chips) publish a reading every second to a real
Mosquitto whose autosave is far off, so a SIGKILL loses what the broker had acknowledged
but not saved. A small script plays the gateway (tests/receipt_gateway.py:
PUBACK after commit, coalesced retained receipts). The broker is killed mid-stream and
restarted on the same port; every reading each device made must end up stored and
covered by a receipt.
"""

from __future__ import annotations

import time
from pathlib import Path

import hostrun
import pytest
import session as fw_session

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from tests.receipt_gateway import ReceiptGateway

READINGS = 14  # one a second


def _wait(cond: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_sigkill_of_the_broker_mid_stream_loses_no_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fw_session, "BACKOFF_MAX_MS", 500)
    caplog.set_level("INFO", logger="citysense.firmware.host")
    port = free_port()
    # persistence on (as production), but nothing saved before the crash
    broker = LocalMosquitto(tmp_path / "mq", port, extra_config="autosave_interval 3600\nallow_anonymous true\n")
    broker.start()
    gateway = ReceiptGateway(port, commit_s=1.5, receipt_every_s=2.0)  # a slow commit: a wide window
    devices = [
        hostrun.HostDevice(
            "airbox", f"crash-{i:02d}", broker.url, 1.0, data_dir=tmp_path / f"dev{i}",
            count=READINGS, receipt_timeout_s=3, drain_s=40,
        )
        for i in range(3)
    ]
    try:
        for dev in devices:
            dev.start()
        assert _wait(lambda: all(len(gateway.stored("airbox", d.device_id)) >= 4 for d in devices), 15)
        assert _wait(lambda: gateway.uncommitted() >= 2, 5)  # kill while acknowledged readings wait for commit
        broker.kill()
        time.sleep(1.0)
        broker.start()
        for dev in devices:
            dev.join(50)
        assert not any(dev.thread.is_alive() for dev in devices)
    finally:
        for dev in devices:
            dev.stop()
        gateway.close()
        broker.stop()
    for dev in devices:
        assert dev.error is None
        issued = dev.device.seq.next
        assert issued == READINGS
        assert gateway.stored("airbox", dev.device_id) == set(range(issued)), dev.device_id
        assert len(dev.queue) == 0 and dev.device.unconfirmed() == 0  # every reading covered by a receipt
    assert "event=resend" in caplog.text
    assert gateway.dropped > 0  # the crash did cost readings the broker had acknowledged
