"""Hourly series on a UTC hour grid: the common currency of fitting, drift and reference import.

Times are numpy ``datetime64[s]`` in UTC and mark the *start* of the hour (00:00 holds
00:00-00:59), the same convention as the MOENV station files and `time_bucket('1 hour')`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

TimeArray = npt.NDArray[np.datetime64]
FloatArray = npt.NDArray[np.float64]
ONE_HOUR = np.timedelta64(3600, "s")


@dataclass(frozen=True)
class HourlySeries:
    """PM2.5 (µg/m³) and optional RH (%) per UTC hour; NaN marks a missing hour's value.

    `notes` carries what the importer did to the data (gaps, dropped flagged values) so
    the CLI can report it instead of hiding it.
    """

    times: TimeArray
    pm25: FloatArray
    rh: FloatArray | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.times.shape != self.pm25.shape:
            raise ValueError(f"times has {self.times.shape[0]} entries but pm25 has {self.pm25.shape[0]}")
        if self.rh is not None and self.rh.shape != self.pm25.shape:
            raise ValueError(f"rh has {self.rh.shape[0]} entries but pm25 has {self.pm25.shape[0]}")
        if self.times.size > 1 and not bool(np.all(np.diff(self.times) > np.timedelta64(0, "s"))):
            raise ValueError("times must be strictly increasing (sorted, no duplicates)")

    def __len__(self) -> int:
        return int(self.times.size)

    def missing_hours(self) -> int:
        """Hours between the first and the last valid PM2.5 hour with no row or a NaN value.

        Empty cells before the first and after the last valid hour are not gaps: a MOENV file
        is whole Taiwan days, so a download that starts at 08:00 Taiwan time (00:00 UTC) has
        eight empty cells on its first day that no station ever measured.
        """
        valid = np.flatnonzero(np.isfinite(self.pm25))
        if valid.size == 0:
            return 0
        span = int((self.times[valid[-1]] - self.times[valid[0]]) / ONE_HOUR) + 1
        return span - int(valid.size)


def to_datetime64(moment: datetime) -> np.datetime64:
    """An aware datetime as UTC datetime64[s]; naive datetimes are refused (ambiguous zone)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an offset such as +08:00 or Z")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(utc, "s")


def to_datetime(moment: np.datetime64) -> datetime:
    """UTC datetime64 back to an aware datetime."""
    seconds = int(moment.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
