"""10,000 hostile payloads through the pure decode path: each is decoded into rows the
database accepts, or refused with a DecodeError that says why. Nothing else may escape."""

from __future__ import annotations

import math
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.records import Decoded, DecodeError
from gateway.codecs import decode
from tests.hostile_payloads import hostile_message

RECEIVED_AT = 1_763_785_260.0
DB_DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the CHECK on devices.device_id
DB_METRIC = re.compile(r"[a-z][a-z0-9_]{0,31}")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def is_int32(value: object) -> bool:
    return isinstance(value, int) and INT32_MIN <= value <= INT32_MAX


def assert_storable(d: Decoded) -> None:
    """What PostgreSQL would refuse, checked in Python: the codec must have refused it first."""
    assert DB_DEVICE_ID.fullmatch(d.device_id), d.device_id
    assert d.kind in ("airbox", "parking", "lass")
    for ts, device_id, metric, raw, value, flags, cal in d.readings:
        assert device_id == d.device_id
        assert math.isfinite(ts) and 0 < ts < 1e11
        assert DB_METRIC.fullmatch(metric), metric
        assert math.isfinite(raw)
        assert value is None or math.isfinite(value)
        assert is_int32(flags) and flags >= 0
        assert cal is None
    for ts, _device, occupied, mag, batt_mv, temp, ev, flags in d.parking:
        assert math.isfinite(ts)
        assert occupied in (None, True, False)
        assert mag is None or math.isfinite(mag)
        assert batt_mv is None or is_int32(batt_mv), batt_mv
        assert temp is None or math.isfinite(temp)
        assert ev in ("change", "heartbeat", "boot")
        assert is_int32(flags)
    if d.status is not None:
        for key in ("rssi", "heap", "queued"):
            assert d.status.get(key) is None or is_int32(d.status[key]), (key, d.status[key])
        for key in ("fw", "ip"):
            assert "\x00" not in str(d.status.get(key) or "")
        assert b"\\u0000" not in orjson.dumps(d.status.get("raw", {}))  # jsonb refuses NUL
    if d.location is not None:
        lat, lon = d.location
        assert -90 <= lat <= 90 and -180 <= lon <= 180


# 100 examples of 100 messages: 10,000 payloads; drawing them in lists costs a third of
# drawing them one example at a time, which keeps this test to seconds.
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(messages=st.lists(hostile_message(), min_size=100, max_size=100))
def test_hostile_payloads_decode_to_storable_rows_or_raise_decode_error_with_a_reason(
    messages: list[tuple[str, bytes]],
) -> None:
    for topic, payload in messages:
        try:
            decoded = decode(topic, payload, RECEIVED_AT)
        except DecodeError as exc:
            assert str(exc).strip(), "a DecodeError must say why"
            continue
        assert decoded.readings or decoded.parking or decoded.status is not None
        assert_storable(decoded)


def test_a_newline_cannot_slip_through_the_id_and_metric_patterns() -> None:
    for topic, payload in [
        ("citysense/v1/airbox/abc\n/up", b'{"v":1,"id":"abc\\n","ts":0,"m":{"pm25":1}}'),
        ("citysense/v1/airbox/abc/up", b'{"v":1,"id":"abc","ts":0,"m":{"pm25\\n":1}}'),
    ]:
        with pytest.raises(DecodeError):
            decode(topic, payload, RECEIVED_AT)


def test_values_that_do_not_fit_their_integer_columns_are_refused_not_retried_forever() -> None:
    status = b'{"online":true,"heap":9223372036854775807}'
    with pytest.raises(DecodeError, match="32-bit"):
        decode("citysense/v1/airbox/box-001/status", status, RECEIVED_AT)
    parking = b'{"v":1,"id":"bay-001","ts":0,"ev":"change","m":{"occupied":1,"batt_mv":1e300}}'
    with pytest.raises(DecodeError, match="32-bit"):
        decode("citysense/v1/parking/bay-001/up", parking, RECEIVED_AT)


def test_status_with_nul_characters_is_refused() -> None:
    with pytest.raises(DecodeError, match="NUL"):
        decode("citysense/v1/airbox/box-001/status", b'{"online":true,"fw":"1.\\u00002"}', RECEIVED_AT)
    with pytest.raises(DecodeError, match="NUL"):
        decode("citysense/v1/airbox/box-001/status", b'{"online":true,"note":"\\u0000"}', RECEIVED_AT)
