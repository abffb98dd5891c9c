"""Which calibration applies to a reading: model versions resolved per timestamp.

Rules (the same for the gateway on live data and for re-calibration of history):

1. A device's own rows (device_id set) win over the default rows of its sensor type
   (device_id NULL, sensor_type set), which win over the built-in `default_model`.
2. A row covers valid_from <= t < valid_to; a missing valid_from or valid_to is unbounded.
3. Among rows of the same level covering t, the latest valid_from wins, then the highest id,
   so a newly stored fit supersedes an older one without deleting history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from calibration.models import Model, parse_model
from calibration.series import TimeArray, to_datetime64

_MIN = np.datetime64("0001-01-01T00:00:00", "s")
_MAX = np.datetime64("9999-12-31T23:59:59", "s")


@dataclass(frozen=True)
class CalibrationRecord:
    """One row of the `calibrations` table."""

    id: int
    device_id: str | None
    sensor_type: str | None
    metric: str
    model: dict[str, Any]
    valid_from: datetime | None
    valid_to: datetime | None
    fitted_at: datetime | None = None
    fit_stats: dict[str, Any] | None = None

    def parsed(self) -> Model:
        """The model object (raises CalibrationModelError for a malformed stored spec)."""
        return parse_model(self.model)

    def covers(self) -> tuple[np.datetime64, np.datetime64]:
        """[start, end) as UTC datetime64, unbounded ends made finite."""
        start = to_datetime64(self.valid_from) if self.valid_from else _MIN
        end = to_datetime64(self.valid_to) if self.valid_to else _MAX
        return start, end


def _level(record: CalibrationRecord, device_id: str, sensor_type: str | None, metric: str) -> int | None:
    """0 for the device's own row, 1 for its sensor type's default, None if it does not apply."""
    if record.metric != metric:
        return None
    if record.device_id == device_id:
        return 0
    if record.device_id is None and sensor_type is not None and record.sensor_type == sensor_type:
        return 1
    return None


def resolve(
    records: Sequence[CalibrationRecord],
    device_id: str,
    sensor_type: str | None,
    metric: str,
    times: TimeArray,
) -> np.ndarray:
    """For each time, the index into `records` of the row that applies, or -1 for none.

    Applicable rows are painted onto the time axis in ascending precedence, so where rows
    overlap the one with the highest (level, valid_from, id) is the last to be written.
    """
    chosen = np.full(times.shape, -1, dtype=np.int64)
    ranked = []
    for index, record in enumerate(records):
        level = _level(record, device_id, sensor_type, metric)
        if level is not None:
            start, end = record.covers()
            ranked.append(((-level, start, record.id), index, start, end))
    for _, index, start, end in sorted(ranked, key=lambda item: item[0]):
        chosen[(times >= start) & (times < end)] = index
    return chosen


def resolve_one(
    records: Sequence[CalibrationRecord], device_id: str, sensor_type: str | None, metric: str, at: datetime
) -> CalibrationRecord | None:
    """The row that applies at one instant, or None (then `default_model` or identity applies)."""
    index = int(resolve(records, device_id, sensor_type, metric, np.array([to_datetime64(at)]))[0])
    return records[index] if index >= 0 else None
