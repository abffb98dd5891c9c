"""The demo fleet: air boxes at school-like sites across Taipei and parking sensors in zones."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from devtools.simulator.air_model import TAIPEI_UTC_OFFSET_H, AirBox, CityState

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


DRIFTING_BOX = "tp-school-0003"
"""The demo's one drifting sensor (when the fleet is made with `drift_since`); it has neighbours
within 3 km in every fleet of 20 boxes or more, so the drift check can compare it."""
DRIFT_GAIN_LOSS_PER_DAY = 0.10
# Site factors stay within 5 % of the city's: a box 30 % above its neighbours every hour would be
# what the drift check calls drifting (a badly placed box), and the demo has one drifting box only.
SITE_FACTORS = [0.95, 0.97, 1.0, 1.0, 1.03, 1.05]  # park ... main road


def make_airboxes(n: int, seed: int = 42, drift_since: float | None = None) -> list[AirBox]:
    """The fleet's boxes; with `drift_since` (Unix s), DRIFTING_BOX loses gain from then on."""
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
                site_factor=rng.choice(SITE_FACTORS),
                rng=random.Random(seed * 1000 + i),
            )
        )
        if boxes[-1].device_id == DRIFTING_BOX and drift_since is not None:
            boxes[-1].drift_since, boxes[-1].gain_loss_per_day = drift_since, DRIFT_GAIN_LOSS_PER_DAY
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


PARKING_HEARTBEAT_EVERY = 10  # steps between heartbeats of a bay that did not change


@dataclass
class FleetModel:
    """The simulated fleet stepped through time: what every device publishes at each step.

    The live publisher and the demo's history step the same model, so the past the demo starts
    with has the same diurnal peaks, episodes, humidity bias and parking rhythm as what follows.
    """

    boxes: list[AirBox]
    spots: list[ParkingSpot]
    city: CityState = field(default_factory=CityState)
    seq: int = 0

    def step(self, now: float, dt_s: float) -> list[tuple[str, str, dict[str, object]]]:
        """Advance by `dt_s` to `now`; (kind, device id, payload-v1 item) of each device publishing now."""
        self.city.advance(dt_s)
        self.seq += 1
        ts = int(now)
        out: list[tuple[str, str, dict[str, object]]] = [
            ("airbox", box.device_id, {"seq": self.seq, "ts": ts, "m": box.sample(now, self.city)})
            for box in self.boxes
        ]
        hour = ((now / 3600.0) + TAIPEI_UTC_OFFSET_H) % 24.0
        demand = 0.4 + 1.2 * (1.0 if 9 <= hour <= 21 else 0.2)
        for spot in self.spots:
            changed = spot.step(dt_s, demand)
            if changed or self.seq == 1 or self.seq % PARKING_HEARTBEAT_EVERY == 0:
                m = {"occupied": int(spot.occupied), "mag": round(48.0 + (40.0 if spot.occupied else 0.0)
                     + spot.rng.gauss(0, 1.5), 1), "batt_mv": 3000 - self.seq % 200, "t": 24.0}
                ev = "change" if changed else ("boot" if self.seq == 1 else "heartbeat")
                out.append(("parking", spot.device_id, {"seq": self.seq, "ts": ts, "m": m, "ev": ev}))
        return out
