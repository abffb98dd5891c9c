"""The demo's co-location campaign: one air box beside a (synthetic) MOENV reference station.

From 2026-11-01 to 2026-11-15 (Taiwan time) box COLOCATED_BOX stood beside a reference station.
Both saw the same air: the station measured it (hourly, as MOENV publishes, integers), the box
read it through its humidity bias. The station's file is in the repository
(`data/reference/moenv_demo_station.csv`, REFERENCE_FILE) so docs/calibration.md's fit runs
verbatim against the demo, and the demo writes the box's readings of those two weeks through
the gateway's pipeline (devtools/simulator/history.py). Both come from `campaign_hours`, which
is seeded and fixed in time: `reference_station_csv()` is the file, byte for byte, and a test
keeps the two equal.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.simulator.air_model import TAIPEI_UTC_OFFSET_H, CityState, diurnal_pm, weather

COLOCATED_BOX = "tp-school-0042"
STATION = "信義示範站"  # a made-up station name: the data are synthetic (data/reference/README.md)
CAMPAIGN_START = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 2026-11-01 00:00 Taiwan time
CAMPAIGN_DAYS = 14
REFERENCE_FILE = Path(__file__).resolve().parents[2] / "data" / "reference" / "moenv_demo_station.csv"


@dataclass(frozen=True)
class CampaignHour:
    """The air of one hour at the station: what the reference measured and what the box sat in."""

    start: float  # Unix s, the start of the hour
    true_pm: float
    t: float
    rh: float


def campaign_hours() -> list[CampaignHour]:
    """Every hour of the campaign, the same on every call (own seeds, fixed dates)."""
    rng = random.Random(2026)
    city = CityState(rng=random.Random(1101))
    hours = []
    t0 = CAMPAIGN_START.timestamp()
    for h in range(CAMPAIGN_DAYS * 24):
        start = t0 + 3600.0 * h
        city.advance(3600.0)
        local = ((start / 3600.0) + TAIPEI_UTC_OFFSET_H + 0.5) % 24.0
        t, rh = weather(local)
        rh = min(97.0, max(25.0, rh + rng.gauss(0, 3.0)))
        true_pm = max(1.0, diurnal_pm(local) * city.episode * math.exp(rng.gauss(0, 0.15)))
        hours.append(CampaignHour(start, true_pm, t + rng.gauss(0, 0.4), rh))
    return hours


def reference_station_csv() -> str:
    """The station's MOENV file (`測站,日期,測項,00..23`, Taiwan time): PM2.5 and RH rows per day."""
    by_day: dict[str, dict[str, list[str]]] = {}
    for hour in campaign_hours():
        local = datetime.fromtimestamp(hour.start, UTC) + timedelta(hours=TAIPEI_UTC_OFFSET_H)
        day = by_day.setdefault(local.strftime("%Y/%m/%d"), {"PM2.5": [""] * 24, "RH": [""] * 24})
        day["PM2.5"][local.hour] = str(round(hour.true_pm))
        day["RH"][local.hour] = str(round(hour.rh))
    lines = ["測站,日期,測項," + ",".join(f"{h:02d}" for h in range(24))]
    for date, items in by_day.items():
        lines.extend(f"{STATION},{date},{item},{','.join(cells)}" for item, cells in items.items())
    return "\n".join(lines) + "\n"
