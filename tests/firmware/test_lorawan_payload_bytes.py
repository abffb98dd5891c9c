"""The LoRaWAN frame encoder's exact bytes (runs on CPython and MicroPython: firmware/tests_mpy).

test_lorawan_payload.py proves the gateway decodes what this encoder writes; this file pins
the bytes, so the same frames come out of the board's MicroPython."""

from parking.lorawan_payload import encode_parking_frame


def test_an_occupied_change_has_the_documented_bytes():
    frame = encode_parking_frame("change", True, mag=41.2, batt_mv=3012, temp=21.5)
    assert frame == b"\x10\x03\x01\x9c\x0b\xc4\x08\x66", frame


def test_a_free_heartbeat_below_zero_degrees():
    frame = encode_parking_frame("heartbeat", False, mag=0.26, batt_mv=2950, temp=-3.07)
    assert frame == b"\x11\x02\x00\x03\x0b\x86\xfe\xcd", frame


def test_a_boot_before_the_detector_decided_measures_nothing():
    assert encode_parking_frame("boot", None) == b"\x12\x00\xff\xff\x00\x00\x80\x00"


def test_values_beyond_a_field_are_clamped():
    frame = encode_parking_frame("change", True, mag=1e6, batt_mv=-5, temp=1e4)
    assert frame == b"\x10\x03\xff\xfe\x00\x01\x7f\xff", frame


def test_an_unknown_event_is_refused():
    try:
        encode_parking_frame("parked", True)
    except ValueError:
        return
    raise AssertionError("no ValueError")
