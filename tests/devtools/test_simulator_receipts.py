"""The simulated fleet keeps each reading until a receipt covers it, across a broker crash (real Mosquitto)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from devtools.simulator.fleet import make_airboxes, make_parking
from devtools.simulator.publisher import FleetPublisher
from tests.receipt_gateway import ReceiptGateway


def _wait(cond: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_simulator_readings_are_kept_until_receipts_cover_them(mosquitto: LocalMosquitto) -> None:
    gateway = ReceiptGateway(mosquitto.port, commit_s=0.2, receipt_every_s=0.5)
    boxes = make_airboxes(20)
    publisher = FleetPublisher(mosquitto.url, boxes, make_parking(5), 0.2, receipt_timeout_s=5)
    try:
        publisher.run(threading.Event(), duration_s=1.5, receipt_wait_s=10)
    finally:
        gateway.close()
    assert publisher.kept() == 0
    assert publisher.receipts > 0
    for box in boxes:
        assert gateway.stored("airbox", box.device_id) == set(range(1, publisher.seq + 1))


@pytest.mark.slow
def test_simulator_loses_no_reading_when_the_broker_is_killed_mid_stream(tmp_path: Path) -> None:
    port = free_port()
    broker = LocalMosquitto(tmp_path / "mq", port, extra_config="autosave_interval 3600\nallow_anonymous true\n")
    broker.start()
    gateway = ReceiptGateway(port, commit_s=1.0, receipt_every_s=1.0)
    boxes = make_airboxes(50)
    publisher = FleetPublisher(broker.url, boxes, make_parking(10), 0.5, receipt_timeout_s=2)
    stop = threading.Event()
    runner = threading.Thread(target=publisher.run, args=(stop, 8.0, 30.0), daemon=True)
    try:
        runner.start()
        assert _wait(lambda: gateway.uncommitted() >= 20, 10)  # kill while acknowledged readings wait for commit
        broker.kill()
        time.sleep(1.0)
        broker.start()
        runner.join(60)
        assert not runner.is_alive()
    finally:
        stop.set()
        gateway.close()
        broker.stop()
    assert gateway.dropped > 0  # the crash did cost readings the broker had acknowledged
    assert publisher.kept() == 0
    for box in boxes:
        assert gateway.stored("airbox", box.device_id) == set(range(1, publisher.seq + 1)), box.device_id
