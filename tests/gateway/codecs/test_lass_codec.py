"""The LASS pipe format, tested on lines the LASS project's own code publishes.

The three lines below are verbatim sample messages from the LASS project's code (LASS,
github.com/LinkItONEDevGroup/LASS and its forks): the `--testdev` samples of its MQTT listener
for apps 0.7.5 and 0.7.10, and the "msg example" comment of its LinkIt Smart 7688 script.
`date` and `time` are UTC.
"""

from __future__ import annotations

import calendar

import pytest

from contracts.flags import Flag
from contracts.records import DecodeError
from gateway.codecs import decode

LASS_0_7_5 = (
    b"|ver_format=3|fmt_opt=0|app=PM25|ver_app=0.7.5|device_id=FT1_003|tick=5447049|date=2015-10-18|time=06:26:25"
    b"|device=LinkItONE|s_0=459.00|s_1=66.00|s_2=1.00|s_3=0.00|s_d0=33.00|s_t0=22.60|s_h0=83.50"
    b"|gps_lat=25.025452|gps_lon=121.371092|gps_fix=1|gps_num=9|gps_alt=3"
)
LASS_0_7_10 = (
    b"|ver_format=3|fmt_opt=0|app=PM25|ver_app=0.7.10|device_id=FT1_035|tick=141284566|date=2015-11-22"
    b"|time=06:26:30|device=LinkItONE|s_0=14131.00|s_1=100.00|s_2=1.00|s_3=0.00|s_d0=18.00|s_t0=32.30"
    b"|s_h0=57.70|s_d1=25.00|gps_lat=24.353619|gps_lon=120.523148|gps_fix=1|gps_num=16|gps_alt=7"
)
LASS_CLOCK_IN_2080 = (
    b"|ver_format=3|fmt_opt=0|app=PM25|ver_app=0.7.6|device_id=FT1_007|tick=582358|date=2080-01-06|time=00:09:21"
    b"|device=LinkItONE|s_0=54.00|s_1=100.00|s_2=1.00|s_3=0.00|s_d0=12.00|s_t0=27.90|s_h0=54.50"
    b"|gps_lat=24.480128|gps_lon=120.595609|gps_fix=0|gps_num=0|gps_alt=13"
)
# The 0.7.10 line with only its date and time moved to now: these devices' clocks are from
# 2015, which the gateway rightly distrusts (before 2020 means an unset clock).
FRESH_0_7_10 = LASS_0_7_10.replace(b"date=2015-11-22|time=06:26:30", b"date=2026-11-22|time=03:04:05")
SENT_FRESH = float(calendar.timegm((2026, 11, 22, 3, 4, 5)))
RECEIVED = SENT_FRESH + 2.5


def _by_metric(line: bytes, received_at: float, topic: str = "LASS/Test/PM25") -> dict[str, tuple[float, float, int]]:
    decoded = decode(topic, line, received_at)
    return {metric: (ts, raw, flags) for ts, _device, metric, raw, _value, flags, _cal in decoded.readings}


def test_lass_0_7_5_line_decodes_to_its_device_values_and_place() -> None:
    decoded = decode("LASS/Test/PM25", LASS_0_7_5, RECEIVED)
    assert decoded.device_id == "FT1_003" and decoded.kind == "lass" and decoded.codec == "lass"
    assert decoded.location == (25.025452, 121.371092)
    rows = _by_metric(LASS_0_7_5, RECEIVED)
    assert {m: raw for m, (_, raw, _) in rows.items() if not m.startswith("lass_")} == {
        "pm25": 33.0, "t": 22.6, "rh": 83.5,
    }


def test_lass_date_and_time_are_read_as_utc() -> None:
    rows = _by_metric(FRESH_0_7_10, RECEIVED)
    assert {ts for ts, _, _ in rows.values()} == {SENT_FRESH}
    assert rows["pm25"] == (SENT_FRESH, 18.0, 0)


def test_lass_0_7_10_line_maps_s_d1_to_pm10() -> None:
    rows = _by_metric(FRESH_0_7_10, RECEIVED)
    assert rows["pm10"][:2] == (SENT_FRESH, 25.0)
    assert rows["t"][1] == 32.3 and rows["rh"][1] == 57.7
    assert decode("LASS/Test/PM25", LASS_0_7_10, RECEIVED).device_id == "FT1_035"


def test_unknown_lass_sensor_keys_are_kept_raw_and_flagged_not_dropped() -> None:
    rows = _by_metric(LASS_0_7_5, RECEIVED)
    assert rows["lass_s_0"][1] == 459.0 and rows["lass_s_1"][1] == 66.0
    for metric in ("lass_s_0", "lass_s_1", "lass_s_2", "lass_s_3"):
        assert rows[metric][2] & Flag.UNKNOWN_METRIC and rows[metric][2] & Flag.LEGACY_FORMAT


def test_a_clock_years_off_is_flagged_clock_skew_and_stored_at_receive_time() -> None:
    received_at = 1_763_785_260.0
    rows = _by_metric(LASS_CLOCK_IN_2080, received_at)
    assert rows["pm25"] == (received_at, 12.0, int(Flag.CLOCK_SKEW))
    rows = _by_metric(LASS_0_7_5, received_at)  # 2015 seen ten years later
    assert rows["pm25"][0] == received_at and rows["pm25"][2] & Flag.CLOCK_SKEW


def test_the_same_line_on_the_parent_and_the_device_topic_decodes_to_the_same_rows() -> None:
    on_parent = decode("LASS/Test/PM25", FRESH_0_7_10, RECEIVED).readings
    on_device = decode("LASS/Test/PM25/FT1_035", FRESH_0_7_10, RECEIVED + 1).readings
    assert on_parent == on_device  # same (device_id, metric, time): the unique key stores it once


def test_airbox_topic_uses_the_lass_codec() -> None:
    line = b"|ver_format=3|app=AirBox|device_id=74DA38AF4812|date=2026-11-22|time=03:00:00|s_d0=7|s_d1=9"
    decoded = decode("LASS/AirBox/74DA38AF4812", line, calendar.timegm((2026, 11, 22, 3, 0, 30)))
    assert decoded.device_id == "74DA38AF4812"
    assert {r[2]: r[3] for r in decoded.readings} == {"pm25": 7.0, "pm10": 9.0}


def test_a_line_without_date_and_time_is_legacy_and_uses_receive_time() -> None:
    line = b"|ver_format=3|fmt_opt=0|app=PM25|ver_app=0.7.10|device_id=FT1_030|tick=236726786|s_d0=11.00|s_t0=24.60"
    rows = _by_metric(line, 1_763_785_260.7)
    assert rows["pm25"][0] == 1_763_785_260.0
    assert rows["pm25"][2] == int(Flag.NO_CLOCK | Flag.LEGACY_FORMAT)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"|ver_format=3|app=PM25|date=2015-10-18|time=06:26:25|s_d0=33.00|", "no device_id"),
        (b"|device_id=FT1_003|date=2015-10-18|time=06:26:25|gps_lat=25.0|", "no sensor values"),
        (b"|device_id=FT1_003|s_d0=nan|", "not finite"),
        (b"|device_id=FT1_003|s_d0=12,5|", "not a number"),
        (b"device_id=FT1_003|s_d0=12|", "must start with '|'"),
        (b"|device_id=FT1_003|s_d0|", "not key=value"),
        (b"|device_id=bad id|s_d0=1|", "does not match"),
        (b"|device_id=\xff\xfe|s_d0=1|", "not UTF-8"),
    ],
)
def test_broken_lass_lines_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode("LASS/Test/PM25", line, 1_763_785_260.0)
