"""The demo fleet: air boxes at school-like sites across Taipei and parking sensors in zones."""

from __future__ import annotations

import random
from dataclasses import dataclass

from devtools.simulator.air_model import AirBox

# Taipei's districts with rough centres, used to scatter schools plausibly.
DISTRICTS = [
    ("Zhongzheng", 25.032, 121.519), ("Datong", 25.063, 121.513), ("Zhongshan", 25.064, 121.533),
    ("Songshan", 25.050, 121.577), ("Da'an", 25.026, 121.543), ("Wanhua", 25.028, 121.497),
    ("Xinyi", 25.033, 121.567), ("Shilin", 25.093, 121.526), ("Beitou", 25.132, 121.501),
    ("Neihu", 25.069, 121.589), ("Nangang", 25.055, 121.607), ("Wenshan", 24.989, 121.570),
]
SCHOOL_KINDS = ["Elementary School", "Junior High School", "Senior High School"]
PARKING_ZONES = [("xinyi-shopping", 25.0375, 121.5665), ("daan-park", 25.0300, 121.5350), ("ximen", 25.0421, 121.5080)]


@dataclass
class ParkingSpot:
    device_id: str
    zone: str
    lat: float
    lon: float
    occupied: bool
    rng: random.Random

    def step(self, dt_s: float, demand: float) -> bool:
        """Advance the bay's occupancy; True when it changed."""
        p_arrive = min(1.0, dt_s / 1800.0 * demand)
        p_leave = min(1.0, dt_s / 3600.0 / max(demand, 0.2))
        if self.occupied and self.rng.random() < p_leave:
            self.occupied = False
            return True
        if not self.occupied and self.rng.random() < p_arrive:
            self.occupied = True
            return True
        return False


def make_airboxes(n: int, seed: int = 42) -> list[AirBox]:
    rng = random.Random(seed)
    boxes = []
    for i in range(1, n + 1):
        district, lat0, lon0 = DISTRICTS[i % len(DISTRICTS)]
        kind = SCHOOL_KINDS[i % len(SCHOOL_KINDS)]
        school = f"{district} No.{(i // len(DISTRICTS)) + 1} {kind}"
        boxes.append(
            AirBox(
                device_id=f"tp-school-{i:04d}", name=f"Air box {i:04d}", school=school,
                lat=round(lat0 + rng.gauss(0, 0.012), 5), lon=round(lon0 + rng.gauss(0, 0.012), 5),
                site_factor=rng.choice([0.8, 0.9, 1.0, 1.0, 1.1, 1.3]),  # park ... main road
                rng=random.Random(seed * 1000 + i),
            )
        )
    return boxes


def make_parking(n: int, seed: int = 43) -> list[ParkingSpot]:
    rng = random.Random(seed)
    spots = []
    for i in range(1, n + 1):
        zone, lat0, lon0 = PARKING_ZONES[i % len(PARKING_ZONES)]
        spots.append(
            ParkingSpot(
                device_id=f"tp-park-{i:04d}", zone=zone,
                lat=round(lat0 + rng.uniform(-0.002, 0.002), 6), lon=round(lon0 + rng.uniform(-0.002, 0.002), 6),
                occupied=rng.random() < 0.6, rng=random.Random(seed * 1000 + i),
            )
        )
    return spots


def host_fleet_ids(count: int) -> tuple[list[str], list[str]]:
    """Ids for a fleet of `count` firmware host devices (`citysense firmware fleet`, the demo,
    which registers them first): two air boxes for every parking sensor."""
    n_parking = count // 3
    airboxes = [f"fw-airbox-{i:02d}" for i in range(1, count - n_parking + 1)]
    parking = [f"fw-parking-{i:02d}" for i in range(1, n_parking + 1)]
    return airboxes, parking
