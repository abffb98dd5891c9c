"""Rules that compare a box with the boxes around it: far from the neighbours' median, and hotspots.

Neighbours are found on a grid of cells about one radius wide (each box is compared with the
boxes of its own and the eight cells around it, not with the whole fleet), distances are
calibration.drift's great-circle `distance_km`, and at most the `max_neighbours` nearest count.

- Far from the neighbours (an `implausible` reason): in every one of the last `neighbour_hours`
  hours the box is off its neighbours' median by both the ratio and the absolute floor (`_off_by`;
  calibration.drift's CUSUM judges slow drift over weeks, this judges a box broken now).
  A dying fan (readings collapsing towards 0 while the neighbours see the air) is caught here.
  By default only a box *below* its neighbours counts (`neighbour_side = "below"`): a box far
  above them is more likely next to a source than broken, and the hotspot rule reports it.
- Hotspot: the local background of a box is the distance-weighted median of its neighbours'
  hourly means (weight 1 / (1 + (d / distance_scale_km)^2); a median, so one other hot box
  does not lift the background); the excess is the box minus that background. A box whose
  excess is above `excess_ugm3` in each of the last `hours` hours is a hotspot; hotspots are
  ranked by their median excess, largest first, so a bureau visits the strongest source first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from alerts.conditions import DeviceInfo, Finding
from alerts.rules import DeviceRules, ImplausibleRule
from calibration.drift import distance_km

Hour = int
"""The start of a UTC hour as Unix seconds (ints hash far faster than aware datetimes, per box per hour)."""

Hourly = dict[str, dict[Hour, float]]
"""device id -> start of the UTC hour -> mean calibrated PM2.5 of that hour."""

KM_PER_DEGREE = 111.32


@dataclass(frozen=True)
class Neighbour:
    device_id: str
    km: float


def neighbours_within(
    devices: Sequence[DeviceInfo], radius_km: float, max_neighbours: int
) -> dict[str, list[Neighbour]]:
    """device -> its nearest neighbours within `radius_km` (placed devices only), nearest first.

    Devices are bucketed in cells a quarter of the radius wide on a local km plane; each device
    searches rings of cells outwards and stops once it has `max_neighbours` nearer than the ring
    (distances themselves are calibration.drift's great-circle `distance_km`)."""
    placed = [d for d in devices if d.lat is not None and d.lon is not None]
    cell_km = max(radius_km / 4, 0.01)
    max_ring = math.ceil(radius_km / cell_km) + 1

    def cell(device: DeviceInfo) -> tuple[int, int]:
        assert device.lat is not None and device.lon is not None
        x = device.lon * KM_PER_DEGREE * math.cos(math.radians(device.lat))
        return math.floor(x / cell_km), math.floor(device.lat * KM_PER_DEGREE / cell_km)

    grid: dict[tuple[int, int], list[DeviceInfo]] = {}
    for device in placed:
        grid.setdefault(cell(device), []).append(device)
    out: dict[str, list[Neighbour]] = {}
    for device in placed:
        assert device.lat is not None and device.lon is not None
        cx, cy = cell(device)
        found: list[Neighbour] = []
        for ring in range(max_ring + 1):
            for dx in range(-ring, ring + 1):
                for dy in range(-ring, ring + 1):
                    if max(abs(dx), abs(dy)) != ring:
                        continue
                    for other in grid.get((cx + dx, cy + dy), ()):
                        if other.device_id == device.device_id:
                            continue
                        assert other.lat is not None and other.lon is not None
                        km = distance_km(device.lat, device.lon, other.lat, other.lon)
                        if km <= radius_km:
                            found.append(Neighbour(other.device_id, km))
            if len(found) >= max_neighbours:
                found.sort(key=lambda n: (n.km, n.device_id))
                # anything not yet visited is at least about `ring` cells away (margin for the plane)
                if found[max_neighbours - 1].km < 0.8 * ring * cell_km:
                    break
        found.sort(key=lambda n: (n.km, n.device_id))
        out[device.device_id] = found[:max_neighbours]
    return out


class NeighbourIndex:
    """neighbours_within, remembered while the devices and their positions stay the same (they
    rarely move: a long-running evaluator pays for the search once)."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] = ()
        self._found: dict[tuple[float, int], dict[str, list[Neighbour]]] = {}

    def lookup(
        self, devices: Sequence[DeviceInfo], radius_km: float, max_neighbours: int
    ) -> dict[str, list[Neighbour]]:
        key = tuple((d.device_id, d.lat, d.lon) for d in devices)
        if key != self._key:
            self._key, self._found = key, {}
        params = (radius_km, max_neighbours)
        if params not in self._found:
            self._found[params] = neighbours_within(devices, radius_km, max_neighbours)
        return self._found[params]


def far_from_neighbours(
    devices: Sequence[DeviceInfo],
    hourly: Hourly,
    hours: Sequence[Hour],
    rules_of: Callable[[DeviceInfo], DeviceRules],
    index: NeighbourIndex | None = None,
) -> dict[str, dict[str, object]]:
    """device -> evidence, for boxes off their neighbours' median in every one of `hours` (oldest first).

    calibration.drift decides; it runs only for boxes off in the latest hour by the same test
    (a necessary condition of being off in every hour), so a city of well-behaved boxes costs
    one median per box, not one drift scan per box and neighbour."""
    defaults = [rules_of(d).implausible for d in devices]
    if not devices:
        return {}
    radius = max(r.neighbour_radius_km for r in defaults)
    widest = max(r.max_neighbours for r in defaults)
    near = (index or NeighbourIndex()).lookup(devices, radius, widest)
    out: dict[str, dict[str, object]] = {}
    for device, rules in zip(devices, defaults, strict=True):
        if not rules.enabled or device.device_id not in hourly or device.lat is None or device.lon is None:
            continue
        chosen = [
            n for n in near.get(device.device_id, ()) if n.km <= rules.neighbour_radius_km and n.device_id in hourly
        ]
        chosen = chosen[: rules.max_neighbours]
        if len(chosen) < rules.min_neighbours:
            continue
        offs: list[tuple[float, float]] = []
        for hour in reversed(hours):  # the latest hour first: most boxes are fine now and stop at it
            off = _off_by(device, chosen, hourly, hour, rules)
            if off is None:
                break
            offs.append(off)
        if len(offs) < len(hours):
            continue
        ratio, diff = offs[0]
        if rules.neighbour_side == "both" or all(off[1] < 0 for off in offs):
            out[device.device_id] = {
                "comparator": f"neighbours:{len(chosen)}",
                "ratio": round(ratio, 3),
                "diff_ugm3": round(diff, 2),
                "hours": len(hours),
                "ratio_threshold": rules.ratio_threshold,
                "abs_threshold": rules.abs_threshold,
            }
    return out


def _off_by(
    device: DeviceInfo, chosen: Sequence[Neighbour], hourly: Hourly, hour: Hour, rules: ImplausibleRule
) -> tuple[float, float] | None:
    """(ratio, difference) to the neighbours' median in one hour when both are beyond their thresholds, else None.

    The per-window test of the fixed-window drift check, on one-hour windows: the ratio off by more
    than `ratio_threshold` AND the difference by more than `abs_threshold` µg/m³ (so clean air,
    where a ratio of two small numbers is noise, never counts on the ratio alone)."""
    own = hourly[device.device_id].get(hour)
    present = [hourly[n.device_id][hour] for n in chosen if hour in hourly[n.device_id]]
    if own is None or len(present) < rules.min_neighbours:
        return None
    median = statistics.median(present)
    ratio = own / median if median > 0 else math.inf
    diff = own - median
    if abs(ratio - 1.0) > rules.ratio_threshold and abs(diff) > rules.abs_threshold:
        return ratio, diff
    return None



def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at which half the total weight lies on each side (the lower one on a tie)."""
    order = sorted(zip(values, weights, strict=True))
    total = sum(w for _, w in order)
    running = 0.0
    for value, weight in order:
        running += weight
        if running >= total / 2:
            return value
    raise ValueError("weighted_median of nothing")


def hotspots(
    devices: Sequence[DeviceInfo],
    hourly: Hourly,
    hours: Sequence[Hour],
    rules_of: Callable[[DeviceInfo], DeviceRules],
    index: NeighbourIndex | None = None,
) -> list[Finding]:
    """Boxes above their local background in every one of `hours`, ranked by median excess (rank 1 first)."""
    if not devices:
        return []
    all_rules = [rules_of(d).hotspot for d in devices]
    near = (index or NeighbourIndex()).lookup(
        devices, max(r.radius_km for r in all_rules), max(r.max_neighbours for r in all_rules)
    )
    scored: list[tuple[float, DeviceInfo, dict[str, object]]] = []
    for device, rules in zip(devices, all_rules, strict=True):
        own = hourly.get(device.device_id)
        if not rules.enabled or own is None:
            continue
        chosen = [n for n in near.get(device.device_id, ()) if n.km <= rules.radius_km and n.device_id in hourly]
        chosen = chosen[: rules.max_neighbours]
        excesses = []
        backgrounds = []
        for hour in reversed(hours[-rules.hours :]):  # the latest hour first: most boxes stop there
            present = [(hourly[n.device_id][hour], n.km) for n in chosen if hour in hourly[n.device_id]]
            if hour not in own or len(present) < rules.min_neighbours:
                break
            background = weighted_median(
                [v for v, _ in present], [1.0 / (1.0 + (km / rules.distance_scale_km) ** 2) for _, km in present]
            )
            if own[hour] - background <= rules.excess_ugm3:
                break
            backgrounds.append(background)
            excesses.append(own[hour] - background)
        if len(excesses) < rules.hours:
            continue
        excess = float(np.median(excesses))
        scored.append(
            (
                excess,
                device,
                {
                    "excess_ugm3": round(excess, 2),
                    "background_ugm3": round(float(np.median(backgrounds)), 2),
                    "hours": rules.hours,
                    "neighbours": len(chosen),
                    "threshold_ugm3": rules.excess_ugm3,
                },
            )
        )
    scored.sort(key=lambda item: (-item[0], item[1].device_id))
    return [
        Finding(
            "hotspot", device.device_id, {**evidence, "rank": rank}, school=device.school, device_id=device.device_id
        )
        for rank, (_, device, evidence) in enumerate(scored, start=1)
    ]
