"""Every quality flag bit, each shown set by the input that should set it (and only then)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from statistics import median

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.flags import FLAG_DOCS, Flag
from gateway.anomaly_flags import MIN_HISTORY, SPIKE_FLOOR, SPIKE_MADS, STUCK_REPEATS, WINDOW, flag_run
from gateway.calibration_step import Calibrator
from gateway.codecs import decode
from gateway.device_registry import DeviceRegistry
from gateway.mqtt_session import Inbound, MqttSession
from gateway.pipeline import Pipeline
from ingest.batch_writer import BatchWriter
from ingest.series_windows import SeriesWindow

NOW = 1_763_785_260.0
UNREACHABLE_DB = "postgresql://nobody@127.0.0.1:9/none"  # prepare() of an open network never connects


def _v1(m: dict[str, object], ts: object = NOW - 60, **extra: object) -> dict[str, tuple[float | None, int]]:
    doc = {"v": 1, "id": "box-001", "seq": 1, "ts": ts, "m": m, **extra}
    d = decode("citysense/v1/airbox/box-001/up", orjson.dumps(doc), NOW)
    return {r[2]: (r[4], r[5]) for r in d.readings}


def _series(values: list[float], metric: str = "pm25") -> list[int]:
    return flag_run(SeriesWindow(), metric, values)


def _series_in_pieces(values: list[float], metric: str, *cuts: int) -> list[int]:
    """The same series judged in several runs, each from the window the one before left."""
    window = SeriesWindow()
    bounds = [0, *sorted(cuts), len(values)]
    return [bits for a, b in itertools.pairwise(bounds) for bits in flag_run(window, metric, values[a:b])]


def test_every_flag_is_a_distinct_bit_with_a_description() -> None:
    bits = [int(f) for f in Flag]
    assert all(b & (b - 1) == 0 for b in bits) and len(set(bits)) == len(bits)
    assert set(FLAG_DOCS) == set(Flag)


def test_plausible_reading_has_no_flags() -> None:
    assert _v1({"pm25": 12.0, "t": 24.5, "rh": 71.2}) == {"pm25": (12.0, 0), "t": (24.5, 0), "rh": (71.2, 0)}


def test_out_of_range_is_flagged_and_kept() -> None:
    assert _v1({"pm25": 5000.0}) == {"pm25": (5000.0, int(Flag.OUT_OF_RANGE))}


def test_sentinel_is_flagged_and_not_calibrated() -> None:
    assert _v1({"pm25": -999}) == {"pm25": (None, int(Flag.SENTINEL))}
    assert _v1({"t": -1})["t"] == (-1.0, 0)  # -1 °C is a temperature, not a sentinel


def test_rh_over_100_is_flagged_as_such_and_out_of_range() -> None:
    assert _v1({"rh": 104.0}) == {"rh": (104.0, int(Flag.RH_OVER_100 | Flag.OUT_OF_RANGE))}


def test_ts_zero_means_no_clock_and_the_receive_time_is_used() -> None:
    d = decode("citysense/v1/airbox/box-001/up", b'{"v":1,"id":"box-001","ts":0,"m":{"pm25":1}}', NOW + 0.7)
    assert d.readings[0][0] == NOW and d.readings[0][5] == int(Flag.NO_CLOCK)


def test_clock_in_the_future_before_2020_or_weeks_old_is_clock_skew() -> None:
    for ts in (NOW + 3600, 946_684_800, NOW - 30 * 86400):
        assert _v1({"pm25": 1}, ts=ts) == {"pm25": (1.0, int(Flag.CLOCK_SKEW))}, ts
    assert _v1({"pm25": 1}, ts=NOW + 60) == {"pm25": (1.0, 0)}  # a little fast is tolerated


def test_unknown_metric_is_kept_raw_and_flagged() -> None:
    assert _v1({"voc": 3.5}) == {"voc": (None, int(Flag.UNKNOWN_METRIC))}


def test_batch_replay_is_flagged_replayed() -> None:
    doc = {"v": 1, "id": "box-001", "batch": [{"seq": 1, "ts": NOW - 120, "m": {"pm25": 9}},
                                              {"seq": 2, "ts": NOW - 60, "m": {"pm25": 10}}]}
    d = decode("citysense/v1/airbox/box-001/up", orjson.dumps(doc), NOW)
    assert [r[5] for r in d.readings] == [int(Flag.REPLAYED)] * 2


def test_lass_line_without_date_is_legacy_format() -> None:
    d = decode("LASS/Test/PM25", b"|device_id=FT1_030|s_d0=11.00|", NOW)
    assert d.readings[0][5] == int(Flag.LEGACY_FORMAT | Flag.NO_CLOCK)


def test_same_value_many_times_is_stuck() -> None:
    flags = _series([17.0] * (STUCK_REPEATS + 2))
    assert not any(f & Flag.STUCK for f in flags[: STUCK_REPEATS - 1])
    assert all(f & Flag.STUCK for f in flags[STUCK_REPEATS:])
    assert not any(_series([0.0] * 30))  # zero is a clean-air reading, not a stuck sensor


def test_jump_far_from_the_recent_median_is_a_spike() -> None:
    flags = _series([10.0, 11.0, 12.0, 10.5, 11.5, 10.0, 300.0, 11.0])
    assert flags[6] & Flag.SPIKE
    assert not any(f & Flag.SPIKE for i, f in enumerate(flags) if i != 6)
    assert not any(f & Flag.SPIKE for f in _series([10.0, 11.0, 12.0, 10.5, 11.5, 10.0, 45.0]))  # under the floor


async def test_message_from_an_unregistered_device_is_flagged_unregistered() -> None:
    pipeline = Pipeline(
        MqttSession("mqtt://127.0.0.1:9", "unit-test", []), BatchWriter(UNREACHABLE_DB),
        DeviceRegistry(UNREACHABLE_DB, accept_unknown=True), Calibrator(UNREACHABLE_DB),
    )
    pipeline.registry.known = pipeline.registry.registered = {"owned-box"}
    now = time.time()
    messages = [
        Inbound(f"citysense/v1/airbox/{d}/up", orjson.dumps({"v": 1, "id": d, "ts": int(now) - 5, "m": {"pm25": 4}}),
                i + 1, 1, now, 1)
        for i, d in enumerate(("owned-box", "new-box"))
    ]
    prepared = await pipeline.prepare(messages)
    flags = {r[1]: r[5] for r in prepared.batch.readings}
    assert flags == {"owned-box": 0, "new-box": int(Flag.UNREGISTERED_DEVICE)}
    assert [d.device_id for d in prepared.batch.devices] == ["new-box"]


async def test_lass_reading_without_a_trusted_clock_sent_on_two_topics_is_marked_once_only() -> None:
    """Both copies reach the writer with one payload digest; the writer stores the first it meets
    (tests/gateway/test_lass_ingest.py proves it through two gateways)."""
    pipeline = Pipeline(
        MqttSession("mqtt://127.0.0.1:9", "unit-test", []), BatchWriter(UNREACHABLE_DB),
        DeviceRegistry(UNREACHABLE_DB, accept_unknown=True), Calibrator(UNREACHABLE_DB),
    )
    line = b"|ver_format=3|app=PM25|device_id=FT1_003|date=2015-10-18|time=06:26:25|s_d0=33.00|s_t0=22.60|"
    now = time.time()
    messages = [
        Inbound("LASS/Test/PM25", line, 1, 1, now, 1), Inbound("LASS/Test/PM25/FT1_003", line, 2, 1, now + 1, 1),
    ]
    prepared = await pipeline.prepare(messages)
    assert sorted(r[2] for r in prepared.batch.readings) == ["pm25", "pm25", "t", "t"]
    once = prepared.batch.once
    assert len(once) == 2 and once[0].digest == once[1].digest
    assert {(o.device_id, o.time) for o in once} == {(r[1], r[0]) for r in prepared.batch.readings}


def _reference_flags(values: list[float], metric: str) -> list[int]:
    """The stuck/spike rules written plainly (statistics.median, no shortcuts)."""
    recent: deque[float] = deque(maxlen=WINDOW)
    last: float | None = None
    repeats = 0
    out = []
    for raw in values:
        flags = 0
        if last == raw and raw != 0.0:
            repeats += 1
            flags |= int(Flag.STUCK) if repeats >= STUCK_REPEATS - 1 else 0
        else:
            repeats = 0
        floor = SPIKE_FLOOR.get(metric)
        if floor is not None and len(recent) >= MIN_HISTORY:
            med = median(recent)
            mad = median([abs(v - med) for v in recent])
            if abs(raw - med) > max(floor, SPIKE_MADS * mad):
                flags |= int(Flag.SPIKE)
        last = raw
        recent.append(raw)
        out.append(flags)
    return out


DECIMALS = st.floats(min_value=0, max_value=1000, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 1))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 400).map(float), DECIMALS, st.sampled_from([0.0, 7.0, 7.0, 7.0, 900.0])), max_size=80
    ),
    st.sampled_from(["pm25", "t", "rh"]),
)
def test_fast_stuck_and_spike_flags_match_the_plain_rules(values: list[float], metric: str) -> None:
    assert _series(values, metric) == _reference_flags(values, metric)
    assert _series_in_pieces(values, metric, len(values) // 3) == _reference_flags(values, metric)


# readings of a steady sensor: runs of a few values that mostly stay within the spike floor of each
# other (judged by the STUCK-only shortcut), with the odd jump just past or far past the floor
_CALM = st.sampled_from([0.0, 0.0, 0.1, -0.1, 0.3, -2.5, 2.5])
_JUMP = st.sampled_from([50.0, -50.0, 50.1, -50.1, 50.6, 8.0, 8.1, -8.6, 25.0, 25.4, 80.1, 80.6])
STEADY = st.builds(
    lambda base, steps: [round(base + s, 1) for s in steps],
    st.floats(0, 500).map(lambda v: round(v, 1)),
    st.lists(st.one_of(*[_CALM] * 8, _JUMP, st.floats(-60, 60).map(lambda v: round(v, 1))), max_size=80),
)


@settings(max_examples=400, deadline=None)
@given(STEADY, st.sampled_from(["pm25", "pm10", "t", "rh", "batt_mv"]), st.integers(1, 9))
def test_steady_series_in_short_runs_get_the_plain_rules_flags(values: list[float], metric: str, run: int) -> None:
    """Runs as the batch writer feeds them (a few readings of a series per batch)."""
    assert _series_in_pieces(values, metric, *range(run, len(values), run)) == _reference_flags(values, metric)


def test_spike_exactly_one_rounding_step_past_the_floor_is_still_a_spike() -> None:
    # 514.2 - 464.2 is 50.000000000000057 in binary floating point: past the pm25 floor of 50
    for base in (464.2, 483.103):
        values = [base] * 8 + [base + 50.0]
        assert _series(values, "pm25") == _reference_flags(values, "pm25")
