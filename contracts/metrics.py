"""The closed registry of metric names, units and physical ranges (ARCHITECTURE.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One registry entry. `low`/`high` bound a physically possible reading (outside: OUT_OF_RANGE);
    `can_be_negative` says whether the quantity itself can be below zero, which decides whether
    a calibration model's output is clipped at 0 (concentrations: clipped; °C, dBm: not)."""

    name: str
    unit: str
    low: float
    high: float
    can_be_negative: bool = False
    decimals: int = 1  # the precision the sensors report it with: exports and aggregates are rounded to it


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("pm1", "µg/m³", 0.0, 1000.0),
        MetricSpec("pm25", "µg/m³", 0.0, 1000.0),
        MetricSpec("pm10", "µg/m³", 0.0, 2000.0),
        MetricSpec("t", "°C", -40.0, 70.0, can_be_negative=True, decimals=2),
        MetricSpec("rh", "%", 0.0, 100.0),
        MetricSpec("p", "hPa", 300.0, 1100.0),
        MetricSpec("co2", "ppm", 250.0, 10000.0, decimals=0),
        MetricSpec("occupied", "0/1", 0.0, 1.0, decimals=0),
        MetricSpec("mag", "µT", 0.0, 5000.0, decimals=2),  # parking: deviation from the learnt baseline
        MetricSpec("mag_base", "µT", 0.0, 5000.0, decimals=2),  # parking heartbeat: the baseline itself
        MetricSpec("batt_mv", "mV", 0.0, 6000.0, decimals=0),
        MetricSpec("rssi", "dBm", -130.0, 0.0, can_be_negative=True, decimals=0),
    )
}

# Values that low-cost firmwares send to mean "no measurement".
SENTINELS = frozenset({-1.0, -99.0, -999.0, -9999.0, -1000.99, 65535.0, 32767.0})

METRIC_NAME_MAX = 32
METRIC_NAME = re.compile(rf"^[a-z][a-z0-9_]{{0,{METRIC_NAME_MAX - 1}}}\Z")
"""Names outside the registry must still look like this to be kept (raw, flagged)."""
