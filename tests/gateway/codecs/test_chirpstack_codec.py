"""ChirpStack v4 uplink events (JSON marshaler) of our parking sensor: what is read, what is refused.

`chirpstack_uplink` builds an event in the shape ChirpStack v4's MQTT integration publishes
(the protobuf JSON mapping of integration.UplinkEvent, as in ChirpStack's documentation),
so the gateway tests publish the same thing on a real broker.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest

from contracts.flags import Flag
from contracts.records import DecodeError
from contracts.topics import split_chirpstack_topic
from gateway.codecs import codec_for, decode
from gateway.codecs.lorawan_parking import decode_parking_frame

APPLICATION_ID = "17c82e96-be03-4f38-aef3-f83d48582d97"
DEV_EUI = "70b3d57ed005a1f2"
RECEIVED_AT = 1_763_785_260.0
# change, occupied and known, 41.2 uT, 3012 mV, 21.5 degC
OCCUPIED_FRAME = bytes([0x10, 0x03, 0x01, 0x9C, 0x0B, 0xC4, 0x08, 0x66])


def chirpstack_topic(dev_eui: str = DEV_EUI, event: str = "up") -> str:
    return f"application/{APPLICATION_ID}/device/{dev_eui}/event/{event}"


def chirpstack_uplink(
    frame: bytes = OCCUPIED_FRAME, *, dev_eui: str = DEV_EUI, deduplication_id: str | None = None,
    time: str | None = "2025-11-22T04:20:59.775023242+00:00", f_cnt: int = 42, f_port: int = 10, **extra: Any,
) -> bytes:
    """An `up` event as ChirpStack v4 writes it; fields at their default (fCnt 0) are left out, as it does."""
    event: dict[str, Any] = {
        "deduplicationId": deduplication_id or str(uuid.uuid4()),
        "deviceInfo": {
            "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "Taipei City",
            "applicationId": APPLICATION_ID, "applicationName": "roadside-parking",
            "deviceProfileId": "9a2b2b4e-6cb9-4b0b-9c3a-0e6e7c1f1b11", "deviceProfileName": "citysense-parking",
            "deviceName": "bay-0042", "devEui": dev_eui, "tags": {"zone": "xinyi-a"},
        },
        "devAddr": "00189440", "dr": 5, "fPort": f_port, "data": base64.b64encode(frame).decode(),
        "rxInfo": [
            {"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255, "rssi": -97, "snr": 4.25, "context": "E3OWOQ=="},
            {"gatewayId": "0016c001f1500bbb", "uplinkId": 211, "rssi": -112, "snr": -6.5, "context": "AAAAAA=="},
        ],
        "txInfo": {"frequency": 923200000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7,
                                                                   "codeRate": "CR_4_5"}}},
    }
    if time is not None:
        event["time"] = time
    if f_cnt:
        event["fCnt"] = f_cnt
    event.update(extra)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def test_uplink_decodes_to_a_parking_event_with_its_radio_quality() -> None:
    dedup = str(uuid.uuid4())
    d = decode(chirpstack_topic(), chirpstack_uplink(deduplication_id=dedup), RECEIVED_AT)
    assert d.codec == "chirpstack" and d.kind == "parking"
    u = d.lorawan
    assert u is not None
    assert (u.deduplication_id, u.dev_eui, u.application_id, u.f_cnt, u.f_port) == (dedup, DEV_EUI, APPLICATION_ID,
                                                                                     42, 10)
    assert u.time == pytest.approx(1_763_785_259.775023)
    assert (u.occupied, u.mag, u.batt_mv, u.temp, u.ev, u.flags) == (True, 41.2, 3012, 21.5, "change", 0)
    assert (u.rssi, u.snr, u.gateway_id, u.gateways) == (-97, 4.25, "0016c001f153a14c", 2)


def test_fields_chirpstack_leaves_out_at_their_default_do_not_break_decoding() -> None:
    """fCnt 0, no adr, no object, no rxInfo, no time: the protobuf JSON mapping omits them."""
    payload = orjson.loads(chirpstack_uplink(f_cnt=0, time=None))
    del payload["rxInfo"], payload["dr"], payload["txInfo"]
    d = decode(chirpstack_topic(), orjson.dumps(payload), RECEIVED_AT)
    assert d.lorawan is not None
    assert d.lorawan.f_cnt == 0 and d.lorawan.rssi is None and d.lorawan.gateways == 0
    assert d.lorawan.time == RECEIVED_AT and d.lorawan.flags == int(Flag.NO_CLOCK)


def test_an_object_from_a_device_profile_codec_is_read_when_data_is_absent() -> None:
    payload = chirpstack_uplink(data=None, object={"occupied": 0, "mag": 3.5, "batt_mv": 2950, "ev": "heartbeat"})
    d = decode(chirpstack_topic(), payload, RECEIVED_AT)
    assert d.lorawan is not None
    assert (d.lorawan.occupied, d.lorawan.mag, d.lorawan.batt_mv, d.lorawan.temp, d.lorawan.ev) == (
        False, 3.5, 2950, None, "heartbeat")


def test_unknown_values_in_the_frame_are_null() -> None:
    frame = bytes([0x12, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x80, 0x00])  # boot, undecided, nothing measured
    f = decode_parking_frame(frame)
    assert (f.ev, f.occupied, f.mag, f.batt_mv, f.temp) == ("boot", None, None, None, None)


def test_values_beyond_the_registry_range_are_flagged() -> None:
    frame = bytes([0x11, 0x02, 0xFF, 0xFE, 0x0B, 0xC4, 0x7F, 0xFF])  # 6553.4 uT, 327.67 degC
    d = decode(chirpstack_topic(), chirpstack_uplink(frame), RECEIVED_AT)
    assert d.lorawan is not None and d.lorawan.flags & Flag.OUT_OF_RANGE


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (chirpstack_uplink(bytes([0x10, 0x03, 0x01])), "3 bytes"),
        (chirpstack_uplink(bytes([0x20, 0x03, 0, 0, 0, 0, 0, 0])), "layout version 2"),
        (chirpstack_uplink(bytes([0x17, 0x03, 0, 0, 0, 0, 0, 0])), "event 7"),
        (chirpstack_uplink(bytes([0x10, 0x07, 0, 0, 0, 0, 0, 0])), "reserved bits"),
        (chirpstack_uplink(bytes([0x10, 0x01, 0, 0, 0, 0, 0, 0])), "not that occupancy is known"),
        (chirpstack_uplink(f_port=2), "fPort 2"),
        (chirpstack_uplink(data="not base64!"), "not base64"),
        (chirpstack_uplink(data=None), "no 'data' and no 'object'"),
        (chirpstack_uplink(deduplication_id="42"), "deduplicationId"),
        (chirpstack_uplink(dev_eui="0102030405060708"), "differs from topic devEui"),
        (chirpstack_uplink(time="yesterday"), "RFC 3339"),
        (chirpstack_uplink(fCnt=-1), "'fCnt'"),
        (b"[1, 2]", "JSON object"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_a_bad_uplink_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(chirpstack_topic(), payload, RECEIVED_AT)


@pytest.mark.parametrize(
    "topic",
    [
        f"application/{APPLICATION_ID}/device/70b3d57ed005a1/event/up",  # 14 digits
        f"application/{APPLICATION_ID}/device/{DEV_EUI}/event/up/extra",
        f"application//device/{DEV_EUI}/event/up",
        f"application/{APPLICATION_ID}/devices/{DEV_EUI}/event/up",
    ],
)
def test_a_topic_not_of_chirpstacks_shape_is_refused(topic: str) -> None:
    with pytest.raises(DecodeError):
        decode(topic, chirpstack_uplink(), RECEIVED_AT)


def test_topic_eui_is_read_in_chirpstacks_spelling() -> None:
    assert split_chirpstack_topic(chirpstack_topic("70B3D57ED005A1F2"), "up") == (APPLICATION_ID, DEV_EUI)


def test_other_chirpstack_events_have_no_codec() -> None:
    for event in ("ack", "txack", "log", "location", "integration"):
        with pytest.raises(DecodeError, match="no codec"):
            codec_for(chirpstack_topic(event=event))


def chirpstack_status(*, dev_eui: str = DEV_EUI, battery: float = 87.5, **extra: Any) -> bytes:
    """A `status` event as ChirpStack v4 writes it (false flags and a 0 margin left out, as it does)."""
    event: dict[str, Any] = {
        "deduplicationId": str(uuid.uuid4()), "time": "2025-11-22T04:21:03.2+00:00",
        "deviceInfo": {"applicationId": APPLICATION_ID, "deviceName": "bay-0042", "devEui": dev_eui},
        "margin": 7, "batteryLevel": battery,
    }
    event.update(extra)
    return orjson.dumps(event)


def test_a_status_event_says_the_device_is_online_with_its_battery() -> None:
    d = decode(chirpstack_topic(event="status"), chirpstack_status(), RECEIVED_AT)
    assert d.codec == "chirpstack_status" and d.dev_eui == DEV_EUI and d.lorawan is None
    assert d.status is not None and d.status["online"] is True
    raw = d.status["raw"]
    assert isinstance(raw, dict)
    assert (raw["event"], raw["batteryLevel"], raw["margin"], raw["externalPowerSource"]) == ("status", 87.5, 7, False)


def test_a_mains_powered_or_unknown_battery_has_no_level() -> None:
    for payload in (chirpstack_status(externalPowerSource=True), chirpstack_status(batteryLevelUnavailable=True)):
        d = decode(chirpstack_topic(event="status"), payload, RECEIVED_AT)
        assert d.status is not None and d.status["raw"]["batteryLevel"] is None  # type: ignore[index]


def test_a_join_event_says_the_device_is_online() -> None:
    payload = orjson.dumps({"deduplicationId": str(uuid.uuid4()), "time": "2025-11-22T04:00:00Z",
                            "deviceInfo": {"devEui": DEV_EUI}, "devAddr": "00189440"})
    d = decode(chirpstack_topic(event="join"), payload, RECEIVED_AT)
    assert d.status is not None and d.status["raw"]["devAddr"] == "00189440"  # type: ignore[index]


@pytest.mark.parametrize(("extra", "reason"), [
    ({"batteryLevel": 140}, "percentage"), ({"externalPowerSource": "yes"}, "true or false"),
    ({"margin": 500}, "'margin'"), ({"deduplicationId": None}, "deduplicationId"),
])
def test_a_bad_status_event_is_refused_with_its_reason(extra: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(chirpstack_topic(event="status"), chirpstack_status(**extra), RECEIVED_AT)
