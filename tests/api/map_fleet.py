"""A city for the page tests, written through the real write path: registration as the demo does it
(devtools.simulator.publisher.register_fleet, on ingest.device_store), readings, statuses and
parking events through ingest.batch_writer.BatchWriter, the gateway's writer."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from contracts.records import ParkingRow, ReadingRow
from devtools.simulator.air_model import AirBox
from devtools.simulator.fleet import ParkingSpot
from devtools.simulator.publisher import register_fleet
from ingest.batch_writer import Batch, StatusRow
from tests.conftest import write_batch

HOURS_OF_HISTORY = 13
"""More than the 12 complete hours the real-time rules read, so every box has an index."""

# calibrated PM2.5 levels across every band of both scales, including the first wave's edge cases
# (9.05, 12.41, 35.45: where arithmetic in the browser got the category wrong)
LEVELS = (3.0, 9.05, 12.41, 12.45, 20.0, 30.45, 35.45, 45.0, 60.0, 130.0, 240.0, 340.0)
FLAGGED = 1
"""The flag bit set on the newest reading of every fifth box (any bit: the map rings flagged boxes)."""


@dataclass(frozen=True)
class Fleet:
    boxes: list[AirBox]
    spots: list[ParkingSpot]
    school: str


def make_fleet(n_boxes: int, n_spots: int = 0) -> Fleet:
    """`n_boxes` boxes on a grid over Taipei, three per school; `n_spots` bays in one zone."""
    rng = random.Random(16)
    columns = math.ceil(math.sqrt(n_boxes))
    step = 0.13 / columns  # the grid covers central Taipei whatever the count
    boxes = [
        AirBox(device_id=f"map-box-{i:04d}", name=f"Box {i:04d}", school=f"School {i // 3:03d}",
               lat=24.99 + (i // columns) * step, lon=121.49 + (i % columns) * step * 1.1, site_factor=1.0, rng=rng)
        for i in range(n_boxes)
    ]
    spots = [ParkingSpot(device_id=f"map-bay-{i:04d}", zone="ximen", lat=25.0421 + (i // 3) * 0.0004,
                         lon=121.5080 + (i % 3) * 0.0005, occupied=i % 2 == 0, rng=rng) for i in range(n_spots)]
    return Fleet(boxes, spots, boxes[0].school)


def level_of(index: int) -> float:
    return LEVELS[index % len(LEVELS)]


def seed_fleet(database_url: str, fleet: Fleet, *, every_min: int = 30) -> None:
    """Register the fleet, then write HOURS_OF_HISTORY hours of PM2.5 every `every_min` minutes per box
    (raw 1.5 x calibrated), a status with firmware, and one event per bay (half occupied, one stale)."""
    register_fleet(database_url, fleet.boxes, fleet.spots)
    now = time.time()
    readings: list[ReadingRow] = []
    for i, box in enumerate(fleet.boxes):
        value = level_of(i)
        steps = HOURS_OF_HISTORY * 60 // every_min
        for step in range(steps, -1, -1):
            t = now - step * every_min * 60 - 5
            flags = FLAGGED if step == 0 and i % 5 == 0 else 0
            readings.append((t, box.device_id, "pm25", value * 1.5, value, flags, None))
    statuses = [StatusRow(b.device_id, now - 60, {"online": True, "fw": "1.4.2"}) for b in fleet.boxes]
    parking: list[ParkingRow] = [
        (now - (7200 * 3 if i == len(fleet.spots) - 1 else 120), s.device_id, s.occupied, 400.0, 3000, 21.0,
         "change", 0)
        for i, s in enumerate(fleet.spots)
    ]
    write_batch(database_url, Batch(readings=readings, statuses=statuses, parking=parking))


def write_reading(database_url: str, device_id: str, value: float) -> float:
    """One new calibrated PM2.5 reading of `device_id` now, through the batch writer, committed on return;
    the time the write began (Unix ms), so a latency measured from it is never an underestimate."""
    began = time.time()
    write_batch(database_url, Batch(readings=[(began, device_id, "pm25", value * 1.5, value, 0, None)]))
    return began * 1000
