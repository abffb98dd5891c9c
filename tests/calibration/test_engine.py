"""The one calibration engine: its rules, and live and history paths agreeing row by row."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.engine import EngineRow, ModelHistory, ModelVersion, calibrate, calibrate_device, humidity_input
from calibration.models import EpaPms5003Model, LinearModel, parse_model
from contracts.flags import Flag
from contracts.metrics import METRICS, SENTINELS
from contracts.records import ReadingRow
from gateway.calibration_step import Calibrator
from gateway.validation import metric_value
from ingest.calibration_store import CalibrationRecord, CalibrationState, model_versions, recalibrated

T = 1_763_785_200.0
UNREACHABLE_DB = "postgresql://nobody@127.0.0.1:9/none"  # Calibrator.install never connects


def linear(cid: int, a: float, b: float, metric: str = "pm25", start: float = -math.inf,
           end: float = math.inf) -> ModelVersion:
    return ModelVersion(cid, metric, LinearModel(a=a, b=b), start, end)


def row(metric: str, raw: float, flags: int = 0, at: float = T, rh: float = math.nan) -> EngineRow:
    return (at, metric, raw, flags, rh)


def id_at(history: ModelHistory, at: float, metric: str = "pm25") -> int | None:
    choice = history.choose(metric, at)
    return None if choice is None else choice[0]


def test_valid_from_is_inclusive_and_valid_to_exclusive() -> None:
    history = ModelHistory([linear(1, 1.0, 1.0, start=T, end=T + 60)])
    assert history.choose("pm25", T - 1) is None
    assert history.choose("pm25", T) == (1, LinearModel(1.0, 1.0))
    assert history.choose("pm25", T + 59.999) is not None
    assert history.choose("pm25", T + 60) is None


def test_newest_valid_from_wins_then_the_highest_id() -> None:
    history = ModelHistory([linear(7, 1.0, 0.0), linear(3, 2.0, 0.0, start=T), linear(4, 3.0, 0.0, start=T)])
    assert [id_at(history, t) for t in (T - 1, T, T + 1e6)] == [7, 4, 4]


def test_device_model_beats_a_newer_type_default() -> None:
    history = ModelHistory([linear(1, 1.0, 0.0, start=T - 100, end=T + 100)], [linear(2, 2.0, 0.0, start=T)])
    assert [id_at(history, t) for t in (T - 200, T - 100, T, T + 100)] == [None, 1, 1, 2]


def test_a_model_applies_only_to_its_metric() -> None:
    assert calibrate_device([row("pm10", 20.0)], [linear(1, 0.5, 0.0)]) == [(20.0, None)]


def test_no_model_keeps_raw_without_an_id() -> None:
    assert calibrate_device([row("pm25", 12.0), row("t", -4.5)], []) == [(12.0, None), (-4.5, None)]


@pytest.mark.parametrize("flag", [Flag.SENTINEL, Flag.OUT_OF_RANGE, Flag.UNKNOWN_METRIC])
def test_no_value_flags_give_null_and_no_id(flag: Flag) -> None:
    rows = [row("pm25", 65535.0, int(flag)), row("pm25", 12.0, int(flag | Flag.SPIKE))]
    assert calibrate_device(rows, [linear(1, 1.0, 0.0)]) == [(None, None), (None, None)]


def test_other_flags_are_calibrated() -> None:
    flags = int(Flag.SPIKE | Flag.STUCK | Flag.NO_CLOCK | Flag.REPLAYED | Flag.UNREGISTERED_DEVICE)
    assert calibrate_device([row("pm25", 10.0, flags)], [linear(1, 2.0, 1.0)]) == [(21.0, 1)]


def test_metric_outside_the_registry_gets_no_value_even_unflagged() -> None:
    assert calibrate_device([row("voc", 3.0)], []) == [(None, None)]


def test_clipping_at_zero_follows_the_metric_registry() -> None:
    versions = [linear(1, 1.0, -10.0), linear(2, 1.0, -10.0, metric="t")]
    assert calibrate_device([row("pm25", 4.0), row("t", 4.0), row("t", -5.5)], versions) == [
        (0.0, 1), (-6.0, 2), (-15.5, 2)
    ]
    assert not METRICS["pm25"].can_be_negative and METRICS["t"].can_be_negative


def test_rh_model_takes_the_rows_rh_and_gives_null_without_it() -> None:
    epa = ModelVersion(5, "pm25", EpaPms5003Model(input="atm"))
    rows = [row("pm25", 20.0, rh=60.0), row("pm25", 20.0, at=T + 1)]
    (with_rh, cid), (without_rh, cid2) = calibrate_device(rows, [epa])
    assert with_rh == pytest.approx(0.524 * 20.0 - 0.0862 * 60.0 + 5.75) and cid == 5
    assert without_rh is None and cid2 == 5


def test_rh_without_a_value_counts_as_missing() -> None:
    assert humidity_input(55.0, int(Flag.SPIKE)) == 55.0
    for raw, flags in ((65535.0, Flag.SENTINEL), (104.0, Flag.OUT_OF_RANGE | Flag.RH_OVER_100)):
        assert math.isnan(humidity_input(raw, int(flags)))
    assert math.isnan(humidity_input(None, 0))


def test_one_device_has_one_humidity_per_time() -> None:
    with pytest.raises(ValueError, match="two humidities"):
        calibrate_device([row("pm25", 1.0, rh=50.0), row("pm10", 1.0, rh=51.0)], [])


def test_rows_of_many_devices_each_use_their_own_history_and_humidity() -> None:
    histories = {"a": ModelHistory([linear(1, 2.0, 0.0)]), "b": ModelHistory([linear(2, 3.0, 0.0)])}
    epa = ModelVersion(3, "pm25", EpaPms5003Model(input="cf1"))
    histories["c"] = ModelHistory([], [epa])
    rows: list[ReadingRow] = [(T, d, "pm25", 10.0, None, 0, None) for d in ("a", "b", "a", "c")]
    out = calibrate(rows, histories, {("c", T): 50.0, ("a", T): 99.0})
    assert [(r[1], r[4], r[6]) for r in out] == [
        ("a", 20.0, 1), ("b", 30.0, 2), ("a", 20.0, 1), ("c", pytest.approx(0.524 * 10 - 0.0862 * 50 + 5.75), 3)
    ]


# -- live path against history path ---------------------------------------------------------------

DEVICES = ("box-a", "box-b", "box-c")
SENSOR_TYPE = {"box-a": "pms5003", "box-b": "pms5003"}  # box-c has no sensor type
GRID = [T + 60.0 * k for k in range(8)]  # readings and model windows share a grid: ties happen
SPECS: list[dict[str, Any]] = [
    {"type": "identity"},
    {"type": "linear", "a": 0.6, "b": -3.0},
    {"type": "linear", "a": 1.1, "b": 2.0},
    {"type": "multilinear_rh", "a": 0.5, "b": -0.1, "c": 1.0},
    {"type": "epa_pms5003_2021", "input": "atm"},
    {"type": "epa_pms5003_2021", "input": "cf1"},
]
METRIC_NAMES = ("pm25", "pm10", "t", "rh", "voc")


def _reading(name: str, sent: float) -> tuple[str, float, int]:
    """(metric, raw, flags) as the gateway's validation makes them from what a device sent."""
    metric, raw, _value, flags = metric_value(name, sent)
    return metric, raw, flags


sent_values = st.one_of(
    st.floats(-60.0, 2500.0, allow_nan=False).map(lambda v: round(v, 2)),
    st.sampled_from(sorted(SENTINELS)),
    st.sampled_from([-5.5, -4.0, -3.5, 0.0, 104.0, 1500.0]),
)
messages = st.lists(
    st.tuples(
        st.sampled_from(DEVICES),
        st.sampled_from(GRID),
        st.dictionaries(st.sampled_from(METRIC_NAMES), sent_values, min_size=1),
    ),
    min_size=1,
    max_size=40,
)


@st.composite
def calibration_rows(draw: st.DrawFn) -> list[CalibrationRecord]:
    """Random device models and type defaults with random (possibly overlapping) validity windows."""
    records = []
    for cid in range(1, draw(st.integers(0, 10)) + 1):
        owner = draw(st.sampled_from([*DEVICES, None]))
        start = draw(st.one_of(st.none(), st.sampled_from(GRID)))
        end = draw(st.one_of(st.none(), st.sampled_from(GRID)))
        records.append(
            CalibrationRecord(
                id=cid,
                device_id=owner,
                sensor_type="pms5003" if owner is None else None,
                metric=draw(st.sampled_from(METRIC_NAMES[:4])),
                model=draw(st.sampled_from(SPECS)),
                valid_from=None if start is None else datetime.fromtimestamp(start, UTC),
                valid_to=None if end is None else datetime.fromtimestamp(end, UTC),
            )
        )
    return records


def _live(batch: list[ReadingRow], records: list[CalibrationRecord]) -> list[ReadingRow]:
    calibrator = Calibrator(UNREACHABLE_DB)
    device_records: dict[str, list[CalibrationRecord]] = {}
    for r in records:
        if r.device_id is not None:
            device_records.setdefault(r.device_id, []).append(r)
    calibrator.install(
        CalibrationState(dict(SENSOR_TYPE), device_records, {"pms5003": [r for r in records if r.device_id is None]})
    )
    return calibrator.apply(batch)


def _history(batch: list[ReadingRow], records: list[CalibrationRecord]) -> dict[tuple[str, str, float], Any]:
    """What `recalibrate` computes from the stored rows: per device and metric, the rows as its
    SELECT returns them (time, raw, flags, and the raw and flags of the rh row at that time)."""
    rh_rows = {(r[1], r[0]): r for r in batch if r[2] == "rh"}
    out = {}
    for device in DEVICES:
        own = model_versions([r for r in records if r.device_id == device])
        defaults = model_versions([r for r in records if r.device_id is None]) if device in SENSOR_TYPE else []
        for metric in {r[2] for r in batch if r[1] == device}:
            stored = [r for r in batch if r[1] == device and r[2] == metric]
            selected = []
            for ts, _dev, _m, raw, _v, flags, _c in stored:
                rh = rh_rows.get((device, ts))
                selected.append(
                    (datetime.fromtimestamp(ts, UTC), raw, flags, rh[3] if rh else None, rh[5] if rh else None)
                )
            values, cids = recalibrated(selected, metric, own, defaults)
            for r, value, cid in zip(stored, values, cids, strict=True):
                out[(device, metric, r[0])] = (value, cid)
    return out


@settings(max_examples=300, deadline=None)
@given(batch_messages=messages, records=calibration_rows())
def test_live_and_history_paths_give_equal_values_and_ids(
    batch_messages: list[tuple[str, float, dict[str, float]]], records: list[CalibrationRecord]
) -> None:
    seen: set[tuple[str, float]] = set()
    batch: list[ReadingRow] = []
    for device, ts, m in batch_messages:
        if (device, ts) in seen:  # the database keeps one row per (device, metric, time)
            continue
        seen.add((device, ts))
        for name, sent in m.items():
            metric, raw, flags = _reading(name, sent)
            batch.append((ts, device, metric, raw, raw, flags, None))
    live = _live(batch, records)
    history = _history(batch, records)
    for r in live:
        assert (r[4], r[6]) == history[(r[1], r[2], r[0])], r
        if r[5] & int(Flag.SENTINEL | Flag.OUT_OF_RANGE | Flag.UNKNOWN_METRIC):
            assert r[4] is None and r[6] is None
        if r[2] == "t" and r[4] is not None and r[6] is None:
            assert r[4] == r[3], "no model: a temperature stays as sent, negative or not"


def test_engine_matches_the_models_own_equation() -> None:
    spec = {"type": "multilinear_rh", "a": 0.5, "b": -0.1, "c": 1.0}
    version = model_versions([CalibrationRecord(9, "d", None, "pm25", spec, None, None)])
    [(value, cid)] = calibrate_device([row("pm25", 30.0, rh=70.0)], version)
    assert cid == 9 and value == pytest.approx(float(parse_model(spec).apply([30.0], [70.0])[0]))
