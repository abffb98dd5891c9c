"""Plausible PM2.5, temperature and humidity for a school air box in Taipei.

The true concentration is a city background (diurnal traffic peaks at 08:00 and 19:00
local time, slow regional episodes such as transported haze) times a site factor
(near a main road or in a park), plus local noise. The low-cost sensor then reads high
in humid air (hygroscopic growth), which is what the calibration has to undo.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

TAIPEI_UTC_OFFSET_H = 8.0


@dataclass
class CityState:
    """City-wide factors shared by every box, advanced once per tick."""

    episode: float = 1.0  # multiplicative regional episode level
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def advance(self, dt_s: float) -> None:
        # mean-reverting log-AR(1) with rare jumps: a haze episode every few days
        k = min(1.0, dt_s / (36 * 3600))
        log_level = math.log(self.episode) * (1 - k) + self.rng.gauss(0, 0.05 * math.sqrt(k + 1e-9))
        if self.rng.random() < dt_s / (4 * 86400):
            log_level += self.rng.uniform(0.5, 1.2)
        self.episode = min(6.0, max(0.4, math.exp(log_level)))


def diurnal_pm(hour_local: float) -> float:
    morning = math.exp(-((hour_local - 8.0) ** 2) / 4.0)
    evening = math.exp(-((hour_local - 19.0) ** 2) / 6.0)
    return 14.0 + 10.0 * morning + 8.0 * evening


def weather(hour_local: float) -> tuple[float, float]:
    """(temperature °C, relative humidity %) with the usual opposite daily cycles."""
    phase = math.cos(2 * math.pi * (hour_local - 14.0) / 24.0)
    t = 24.0 + 4.5 * phase
    rh = 72.0 - 14.0 * phase
    return t, rh


def sensor_reading(true_pm: float, rh: float) -> float:
    """What a PMS5003-like sensor reports: high bias growing with humidity."""
    growth = 1.0 + 0.2 * (rh / 100.0) ** 2 / max(0.05, 1.0 - rh / 100.0) * 0.5
    return true_pm * 1.35 * growth + 1.5


GAIN_FLOOR = 0.3  # a drifting optical sensor keeps reading something; it is never zero


@dataclass
class AirBox:
    device_id: str
    name: str
    school: str
    lat: float
    lon: float
    site_factor: float
    rng: random.Random
    # from `drift_since` (Unix s) on, the sensor loses this fraction of its gain per day (dust on the
    # laser, a clogged inlet): what `citysense calibrate drift` must find
    gain_loss_per_day: float = 0.0
    drift_since: float | None = None

    def gain(self, unix_s: float) -> float:
        """The sensor's gain at `unix_s`: 1 for a healthy box, falling linearly for a drifting one."""
        if self.drift_since is None or unix_s <= self.drift_since:
            return 1.0
        return max(GAIN_FLOOR, 1.0 - self.gain_loss_per_day * (unix_s - self.drift_since) / 86400.0)

    def sample(self, unix_s: float, city: CityState) -> dict[str, float]:
        hour = ((unix_s / 3600.0) + TAIPEI_UTC_OFFSET_H) % 24.0
        t, rh = weather(hour)
        t += self.rng.gauss(0, 0.3)
        # the air's humidity varies little between sites a few km apart; the particles grow with it
        rh = min(99.0, max(20.0, rh + self.rng.gauss(0, 0.7)))
        true_pm = max(0.5, diurnal_pm(hour) * city.episode * self.site_factor * math.exp(self.rng.gauss(0, 0.06)))
        return self.measure(unix_s, true_pm, t, rh)

    def measure(self, unix_s: float, true_pm: float, t: float, rh: float) -> dict[str, float]:
        """The payload's `m` for air of `true_pm` µg/m³ at `t` °C and `rh` %: the sensor's humidity
        bias and its gain at `unix_s` applied; its RH channel reads the air's RH with its own noise."""
        pm25 = sensor_reading(true_pm, rh) * self.gain(unix_s)
        return {
            "pm1": round(pm25 * 0.72, 1),
            "pm25": round(pm25, 1),
            "pm10": round(pm25 * 1.35 + self.rng.uniform(0, 4), 1),
            "t": round(t, 1),
            "rh": round(min(99.0, max(20.0, rh + self.rng.gauss(0, 1.5))), 1),
        }
