"""The engine's column form (`calibrate_series`, `humidity_column`) gives what its row form gives, row by row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.engine import (
    ModelHistory,
    ModelVersion,
    calibrate,
    calibrate_series,
    humidity_column,
    humidity_input,
)
from calibration.models import EpaPms5003Model, LinearModel, MultilinearRHModel
from contracts.flags import Flag
from contracts.records import ReadingRow

T = 1_763_785_200.0
FLAG_CHOICES = [0, 0, 0, int(Flag.SENTINEL), int(Flag.OUT_OF_RANGE), int(Flag.IMPORTED), int(Flag.STUCK)]


def _history() -> ModelHistory:
    """Device versions that change over the rows' span, over type defaults with an RH model."""
    device = [
        ModelVersion(11, "pm25", LinearModel(a=0.6, b=-3.0), T + 600, T + 1800),
        ModelVersion(12, "pm25", MultilinearRHModel(a=0.7, b=-0.05, c=1.0), T + 1800, T + 2400),
        ModelVersion(13, "t", LinearModel(a=1.01, b=-0.4), T + 300),
    ]
    defaults = [ModelVersion(5, "pm25", EpaPms5003Model(input="atm")), ModelVersion(6, "rh", LinearModel(1.0, 2.0))]
    return ModelHistory(device, defaults)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", ["pm25", "t", "rh", "pm10", "mystery"])
def test_calibrate_series_gives_the_value_and_id_calibrate_gives(seed: int, metric: str) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    times = T + np.sort(rng.choice(3000, n, replace=False)).astype(np.float64)  # one rh per time
    raws = np.round(rng.normal(20, 25, n), 2)  # negatives too: clipped or not by the metric
    raws[rng.random(n) < 0.03] = math.nan
    flags = rng.choice(FLAG_CHOICES, n).astype(np.int64)
    rh = np.where(rng.random(n) < 0.2, math.nan, rng.uniform(30, 99, n))
    rows: list[ReadingRow] = [
        (t, "dev", metric, r, None, f, None)
        for t, r, f in zip(times.tolist(), raws.tolist(), flags.tolist(), strict=True)
    ]
    rh_at = {("dev", t): h for t, h in zip(times.tolist(), rh.tolist(), strict=True)}
    expected = [(r[4], r[6]) for r in calibrate(rows, {"dev": _history()}, rh_at)]
    values, ids = calibrate_series(_history(), metric, times, raws, flags, rh)
    got = list(zip(values, ids, strict=True))
    assert got == expected
    assert metric not in ("pm25", "t") or any(i is not None for i in ids)  # the models did apply


def test_humidity_column_is_humidity_input_of_each_reading() -> None:
    raws = np.array([55.0, 101.0, -1.0, 70.0, math.nan], dtype=np.float64)
    flags = np.array([0, int(Flag.OUT_OF_RANGE | Flag.RH_OVER_100), int(Flag.SENTINEL), int(Flag.IMPORTED), 0])
    column = humidity_column(raws, flags.astype(np.int64)).tolist()
    expected = [humidity_input(r, f) for r, f in zip(raws.tolist(), flags.tolist(), strict=True)]
    assert [None if math.isnan(v) else v for v in column] == [None if math.isnan(v) else v for v in expected]
