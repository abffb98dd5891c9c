"""The demo fleet and the bench register their devices through ingest/device_store.py, and a
demo restarted on the same database registers its fleet again instead of failing."""

from __future__ import annotations

import time

from devtools.bench.ingest_run import register_devices as register_bench_devices
from devtools.simulator.fleet import make_airboxes, make_parking
from devtools.simulator.publisher import register_fleet
from tests.conftest import count


def test_demo_fleet_registers_twice_on_one_database(database_url: str) -> None:
    boxes, spots = make_airboxes(5), make_parking(3)
    for _ in range(2):
        register_fleet(database_url, boxes, spots)
    assert count(database_url, "SELECT count(*) FROM devices WHERE registered AND owner = 'demo'") == 8
    assert count(database_url, "SELECT count(*) FROM devices WHERE kind = 'airbox' AND sensor_type = 'pms5003'") == 5
    assert count(database_url, "SELECT count(*) FROM devices WHERE kind = 'parking' AND sensor_type IS NULL") == 3
    assert count(database_url, "SELECT count(*) FROM parking_spots") == 3


def test_bench_fleet_of_5000_registers_in_seconds(database_url: str) -> None:
    started = time.perf_counter()
    register_bench_devices(database_url, 5000)
    took = time.perf_counter() - started
    print(f"5000 bench devices registered in {took:.2f} s")
    assert count(database_url, "SELECT count(*) FROM devices WHERE registered AND sensor_type = 'pms5003'") == 5000
    assert took < 20
