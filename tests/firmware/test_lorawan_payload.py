"""The firmware's LoRaWAN frame encoder and the gateway's decoder speak one layout (CPython only:
it imports the gateway). Every value the encoder can write comes back as it was, to the
field's resolution; the bytes of a known event are pinned, so neither side can drift alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs import lorawan_parking
from gateway.codecs.lorawan_parking import decode_parking_frame
from parking import lorawan_payload
from parking.lorawan_payload import encode_parking_frame
from tests.gateway.codecs.test_chirpstack_codec import OCCUPIED_FRAME


def test_a_known_event_has_the_documented_bytes() -> None:
    assert encode_parking_frame("change", True, mag=41.2, batt_mv=3012, temp=21.5) == OCCUPIED_FRAME


def test_both_sides_share_port_version_and_events() -> None:
    for name in ("PARKING_FPORT", "LAYOUT_VERSION", "EVENTS", "MAG_UNKNOWN", "BATT_UNKNOWN", "TEMP_UNKNOWN"):
        assert getattr(lorawan_payload, name) == getattr(lorawan_parking, name), name


@given(
    ev=st.sampled_from(["change", "heartbeat", "boot"]),
    occupied=st.sampled_from([None, True, False]),
    mag=st.none() | st.floats(0.0, 6553.4, allow_nan=False),
    batt_mv=st.none() | st.integers(1, 65535),
    temp=st.none() | st.floats(-327.67, 327.67, allow_nan=False),
)
def test_what_the_firmware_encodes_the_gateway_decodes(
    ev: str, occupied: bool | None, mag: float | None, batt_mv: int | None, temp: float | None
) -> None:
    frame = decode_parking_frame(encode_parking_frame(ev, occupied, mag, batt_mv, temp))
    assert (frame.ev, frame.occupied, frame.batt_mv) == (ev, occupied, batt_mv)
    assert frame.mag is None if mag is None else frame.mag == pytest.approx(mag, abs=0.05 + 1e-9)
    assert frame.temp is None if temp is None else frame.temp == pytest.approx(temp, abs=0.005 + 1e-9)


def test_values_beyond_a_field_are_clamped_not_wrapped() -> None:
    frame = decode_parking_frame(encode_parking_frame("heartbeat", False, mag=9999.0, batt_mv=70000, temp=-400.0))
    assert (frame.mag, frame.batt_mv, frame.temp) == (6553.4, 65535, -327.67)


def test_an_unknown_event_is_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match="change, heartbeat or boot"):
        encode_parking_frame("parked", True)
