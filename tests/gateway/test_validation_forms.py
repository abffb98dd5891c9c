"""The two forms of the metric-value rule (one value, a whole `m`) give the same rows and errors."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.flags import Flag
from contracts.metrics import METRICS, SENTINELS
from contracts.records import DecodeError, ReadingRow
from gateway.validation import measurement_rows, metric_value

names = st.one_of(
    st.sampled_from(sorted(METRICS)), st.sampled_from(["noise_db", "x1", "Bad", "9a", "", "pm25 "]),
    st.text(max_size=6),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-50.0, max_value=2500.0),
    st.integers(min_value=-(2**70), max_value=2**70), st.integers(min_value=-100, max_value=2100),
    st.sampled_from(sorted(SENTINELS)), st.booleans(), st.none(), st.text(max_size=3),
)


def one_by_one(device_id: str, ts: float, m: dict[str, object], flags: int) -> list[ReadingRow]:
    rows: list[ReadingRow] = []
    for name, value in m.items():
        metric, raw, calibrate, metric_flags = metric_value(name, value)
        rows.append((ts, device_id, metric, raw, calibrate, metric_flags | flags, None))
    return rows


def outcome(form: object, *args: object) -> tuple[str, object]:
    try:
        return "rows", form(*args)  # type: ignore[operator]
    except (DecodeError, OverflowError) as exc:
        return type(exc).__name__, str(exc)


def same(a: tuple[str, object], b: tuple[str, object]) -> bool:
    """Equal outcomes, NaN equal to NaN (a NaN raw never reaches a row, but say so if it did)."""
    if a[0] != b[0] or a[0] != "rows":
        return a == b
    rows_a, rows_b = a[1], b[1]
    assert isinstance(rows_a, list) and isinstance(rows_b, list)
    return len(rows_a) == len(rows_b) and all(
        all(x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
            for x, y in zip(ra, rb, strict=True)) and [type(x) for x in ra] == [type(y) for y in rb]
        for ra, rb in zip(rows_a, rows_b, strict=True)
    )


@settings(max_examples=500, deadline=None)
@given(m=st.dictionaries(names, values, max_size=8), flags=st.sampled_from([0, int(Flag.REPLAYED | Flag.NO_CLOCK)]))
def test_measurement_rows_equal_metric_value_entry_by_entry(m: dict[str, object], flags: int) -> None:
    args = ("box-1", 1_763_000_000.5, m, flags)
    assert same(outcome(measurement_rows, *args), outcome(one_by_one, *args))


def test_in_range_registry_values_become_rows_with_the_entry_flags() -> None:
    rows = measurement_rows("box-1", 10.0, {"pm25": 12, "t": -3.5, "rh": 101.0, "pm10": 65535}, 4)
    assert rows == [
        (10.0, "box-1", "pm25", 12.0, 12.0, 4, None), (10.0, "box-1", "t", -3.5, -3.5, 4, None),
        (10.0, "box-1", "rh", 101.0, 101.0, int(Flag.OUT_OF_RANGE | Flag.RH_OVER_100) | 4, None),
        (10.0, "box-1", "pm10", 65535.0, None, int(Flag.SENTINEL) | 4, None),
    ]
    assert type(rows[0][3]) is float
