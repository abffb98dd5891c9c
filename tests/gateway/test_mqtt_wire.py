"""gateway/mqtt_wire.py byte by byte against the packet layouts of the MQTT 3.1.1 and MQTT 5.0
specifications (OASIS). Every expected byte string below is written out by hand from the
spec's figures and tables (section numbers in the test names' docstrings), not produced by
the code under test or by another client library."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import mqtt_wire as wire
from gateway.mqtt_wire import PROTOCOL_5, PROTOCOL_311, MqttProtocolError
from tests.mqtt_packets import publish


def frame_of(packet: bytes) -> wire.Frame:
    frame = wire.read_frame(packet, 0)
    assert frame is not None and frame.end == len(packet)
    return frame


# -- primitives (3.1.1 §2.2.3 table 2.4, 5.0 §1.5.5 table 1-1, §1.5.4) ----------------------------
VARINTS = [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_variable_byte_integer_matches_the_spec_table_both_ways(value: int, encoded: bytes) -> None:
    assert wire.encode_varint(value) == encoded
    assert wire.decode_varint(encoded + b"\x99", 0, len(encoded) + 1) == (value, len(encoded))


def test_variable_byte_integer_of_five_bytes_is_malformed_and_a_cut_one_is_incomplete() -> None:
    with pytest.raises(MqttProtocolError):
        wire.decode_varint(b"\xff\xff\xff\xff\x01", 0, 5)
    assert wire.decode_varint(b"\x80\x80", 0, 2) is None
    with pytest.raises(ValueError, match="does not fit"):
        wire.encode_varint(268_435_456)


def test_utf8_string_is_length_prefixed_as_in_the_spec_example() -> None:
    # §1.5.4 figure 1.1 (5.0) / §1.5.3 (3.1.1): "A\U0002A6D4" is 00 05 41 F0 AA 9B 94
    assert wire.encode_string("A\U0002a6d4") == b"\x00\x05\x41\xf0\xaa\x9b\x94"
    assert wire.decode_string(b"\x00\x05\x41\xf0\xaa\x9b\x94", 0, 7) == ("A\U0002a6d4", 7)
    with pytest.raises(MqttProtocolError):
        wire.decode_string(b"\x00\x05\x41", 0, 3)


def test_every_property_type_round_trips_with_its_identifier_and_length() -> None:
    """5.0 §2.2.2: byte, two/four-byte integers, variable byte integer, string, binary, string pair."""
    props: wire.Properties = [
        (0x01, 1), (0x02, 60), (0x03, "json"), (0x09, b"\x01\x02"), (0x0B, 200), (0x21, 10), (0x26, ("k", "v")),
    ]
    encoded = wire.encode_properties(props)
    body = (
        b"\x01\x01" + b"\x02\x00\x00\x00\x3c" + b"\x03\x00\x04json" + b"\x09\x00\x02\x01\x02" + b"\x0b\xc8\x01"
        + b"\x21\x00\x0a" + b"\x26\x00\x01k\x00\x01v"
    )
    assert encoded == bytes([len(body)]) + body
    assert wire.decode_properties(encoded, 0, len(encoded)) == (props, len(encoded))
    assert wire.encode_properties([]) == b"\x00"
    with pytest.raises(MqttProtocolError, match="unknown property"):
        wire.decode_properties(b"\x02\x7f\x00", 0, 3)


# -- CONNECT (3.1.1 §3.1, 5.0 §3.1) ---------------------------------------------------------------------
def test_connect_3_1_1_with_credentials_and_clean_session_off() -> None:
    packet = wire.build_connect("gw", protocol=PROTOCOL_311, keepalive_s=30, username="u", password="p")
    assert packet == (
        b"\x10\x14"  # CONNECT, remaining length 20
        b"\x00\x04MQTT\x04"  # protocol name, level 4
        b"\xc0"  # user name + password flags; clean session (bit 1) off
        b"\x00\x1e"  # keep alive 30 s
        b"\x00\x02gw\x00\x01u\x00\x01p"
    )


def test_connect_3_1_1_anonymous_and_clean_and_password_alone_refused() -> None:
    assert wire.build_connect("c", protocol=PROTOCOL_311, keepalive_s=0, clean_start=True) == (
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x01c"
    )
    with pytest.raises(ValueError, match="only with a user name"):
        wire.build_connect("c", protocol=PROTOCOL_311, password="p")


def test_connect_5_keeps_the_session_with_expiry_receive_maximum_and_packet_size() -> None:
    packet = wire.build_connect(
        "gw", protocol=PROTOCOL_5, keepalive_s=30, session_expiry_s=604_800, receive_maximum=1000,
        maximum_packet_size=4_194_304,
    )
    assert packet == (
        b"\x10\x1c"
        b"\x00\x04MQTT\x05"  # level 5
        b"\x00"  # no credentials, clean start off
        b"\x00\x1e"
        b"\x0d"  # properties: 13 bytes
        b"\x11\x00\x09\x3a\x80"  # Session Expiry Interval 604800 s
        b"\x21\x03\xe8"  # Receive Maximum 1000
        b"\x27\x00\x40\x00\x00"  # Maximum Packet Size 4 MiB
        b"\x00\x02gw"
    )
    # the spec's default Receive Maximum (65535) and no expiry leave the properties empty
    assert wire.build_connect("gw", protocol=PROTOCOL_5, keepalive_s=30, username="u") == (
        b"\x10\x12\x00\x04MQTT\x05\x80\x00\x1e\x00\x00\x02gw\x00\x01u"
    )


# -- CONNACK (3.1.1 §3.2, 5.0 §3.2) -----------------------------------------------------------------------
def test_connack_3_1_1_session_present_and_refusal() -> None:
    ack = wire.parse_connack(b"\x20\x02\x01\x00", frame_of(b"\x20\x02\x01\x00"), PROTOCOL_311)
    assert ack.session_present and ack.accepted
    refused = wire.parse_connack(b"\x20\x02\x00\x05", frame_of(b"\x20\x02\x00\x05"), PROTOCOL_311)
    assert not refused.session_present and refused.reason_code == 5 and not refused.accepted
    assert wire.reason_name(5, PROTOCOL_311) == "not authorized (0x05)"
    for bad in (b"\x20\x02\x02\x00", b"\x20\x03\x00\x00\x00"):  # reserved flag bit; 3 bytes in 3.1.1
        with pytest.raises(MqttProtocolError):
            wire.parse_connack(bad, frame_of(bad), PROTOCOL_311)


def test_connack_5_reads_reason_code_and_properties() -> None:
    packet = b"\x20\x0b\x01\x00\x08" + b"\x21\x00\x0a" + b"\x13\x00\x3c" + b"\x24\x01"
    ack = wire.parse_connack(packet, frame_of(packet), PROTOCOL_5)
    assert ack.session_present and ack.accepted
    assert wire.property_int(ack.properties, wire.RECEIVE_MAXIMUM) == 10
    assert wire.property_int(ack.properties, wire.SERVER_KEEP_ALIVE) == 60
    assert wire.property_int(ack.properties, wire.MAXIMUM_QOS) == 1
    refused = wire.parse_connack(b"\x20\x03\x00\x86\x00", frame_of(b"\x20\x03\x00\x86\x00"), PROTOCOL_5)
    assert refused.reason_code == 0x86 and wire.reason_name(0x86) == "bad user name or password (0x86)"


# -- SUBSCRIBE / SUBACK (3.1.1 §3.8-3.9, 5.0 §3.8-3.9) ---------------------------------------------------
def test_subscribe_3_1_1_has_flags_0010_packet_id_and_requested_qos() -> None:
    assert wire.build_subscribe(10, [("a/b", 1)], PROTOCOL_311) == b"\x82\x08\x00\x0a\x00\x03a/b\x01"
    with pytest.raises(ValueError, match="only the QoS bits"):
        wire.build_subscribe(10, [("a/b", wire.subscription_options(1, no_local=True))], PROTOCOL_311)


def test_subscribe_5_has_empty_properties_and_subscription_options() -> None:
    shared = "$share/g/citysense/v1/+/+/up"
    packet = wire.build_subscribe(10, [("a/b", 1), (shared, wire.subscription_options(1))], PROTOCOL_5)
    filters = b"\x00\x03a/b\x01" + b"\x00\x1c" + shared.encode() + b"\x01"
    assert packet == b"\x82" + bytes([3 + len(filters)]) + b"\x00\x0a\x00" + filters
    # §3.8.3.1: bit 2 No Local, bit 3 Retain As Published, bits 4-5 Retain Handling
    assert wire.subscription_options(1, no_local=True) == 0x05
    assert wire.subscription_options(0, retain_as_published=True, retain_handling=2) == 0x28


def test_suback_lists_granted_and_refused_filters_in_both_versions() -> None:
    old = b"\x90\x04\x00\x0a\x01\x80"
    ack = wire.parse_suback(old, frame_of(old), PROTOCOL_311)
    assert (ack.packet_id, ack.reason_codes, ack.refused) == (10, [1, 0x80], [0x80])
    new = b"\x90\x09\x00\x0a\x05\x1f\x00\x02no\x8f"  # reason string "no", topic filter invalid
    ack5 = wire.parse_suback(new, frame_of(new), PROTOCOL_5)
    assert ack5.reason_codes == [0x8F] and wire.property_str(ack5.properties, wire.REASON_STRING) == "no"


# -- PUBLISH (3.1.1 §3.3, 5.0 §3.3) ----------------------------------------------------------------------
def test_publish_build_qos_1_and_0_retain_and_dup_in_both_versions() -> None:
    assert wire.build_publish("a/b", b"hi", protocol=PROTOCOL_311, qos=1, packet_id=10) == (
        b"\x32\x09\x00\x03a/b\x00\x0ahi"
    )
    assert wire.build_publish("a/b", b"hi", protocol=PROTOCOL_311, retain=True) == b"\x31\x07\x00\x03a/bhi"
    assert wire.build_publish("a/b", b"hi", protocol=PROTOCOL_5, qos=1, packet_id=10, dup=True) == (
        b"\x3a\x0a\x00\x03a/b\x00\x0a\x00hi"
    )
    for kwargs in ({"qos": 2, "packet_id": 1}, {"qos": 1, "packet_id": 0}, {"qos": 0, "dup": True}):
        with pytest.raises(ValueError):
            wire.build_publish("a/b", b"", protocol=PROTOCOL_5, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wildcard"):
        wire.build_publish("a/+", b"", protocol=PROTOCOL_5)


@pytest.mark.parametrize(
    ("remaining", "header"),
    [(127, b"\x30\x7f"), (128, b"\x30\x80\x01"), (16_383, b"\x30\xff\x7f"), (16_384, b"\x30\x80\x80\x01")],
)
def test_publish_remaining_length_crosses_each_varint_step(remaining: int, header: bytes) -> None:
    payload = b"x" * (remaining - 3)  # topic "t" takes 3 bytes
    packet = wire.build_publish("t", payload, protocol=PROTOCOL_311)
    assert packet == header + b"\x00\x01t" + payload
    assert wire.parse_publish(packet, frame_of(packet), PROTOCOL_311) == wire.Publish("t", payload, 0)
    got: list[tuple[str, bytes, int, int]] = []
    assert wire.take_publishes(packet, 0, PROTOCOL_311, lambda *m: got.append(m), 10) == len(packet)
    assert got == [("t", payload, 0, 0)]


def test_publish_5_properties_are_read_by_the_careful_parser_and_skipped_by_the_fast_one() -> None:
    props = (
        b"\x01\x01"  # Payload Format Indicator: UTF-8
        b"\x02\x00\x00\x00\x3c"  # Message Expiry Interval 60 s
        b"\x03\x00\x04json"  # Content Type
        b"\x08\x00\x03r/t"  # Response Topic
        b"\x09\x00\x01\x07"  # Correlation Data
        b"\x0b\x80\x01"  # Subscription Identifier 128 (two-byte variable integer)
        b"\x26\x00\x01k\x00\x01v"  # User Property
    )
    body = b"\x00\x03a/b\x00\x07" + bytes([len(props)]) + props + b"hi"  # topic, packet id 7, properties
    packet = b"\x32" + bytes([len(body)]) + body
    parsed = wire.parse_publish(packet, frame_of(packet), PROTOCOL_5)
    assert (parsed.topic, parsed.payload, parsed.qos, parsed.packet_id) == ("a/b", b"hi", 1, 7)
    assert [ident for ident, _ in parsed.properties] == [0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x26]
    assert wire.property_int(parsed.properties, 0x0B) == 128
    got: list[tuple[str, bytes, int, int]] = []
    assert wire.take_publishes(packet, 0, PROTOCOL_5, lambda *m: got.append(m), 10) == len(packet)
    assert got == [("a/b", b"hi", 7, 1)]


def test_publish_by_topic_alias_alone_is_refused_with_reason_topic_alias_invalid() -> None:
    packet = b"\x30\x08\x00\x00\x03\x23\x00\x01hi"  # empty topic, Topic Alias 1
    assert wire.take_publishes(packet, 0, PROTOCOL_5, lambda *m: None, 10) == 0
    with pytest.raises(MqttProtocolError) as refused:
        wire.parse_publish(packet, frame_of(packet), PROTOCOL_5)
    assert refused.value.reason_code == wire.TOPIC_ALIAS_INVALID


@pytest.mark.parametrize(
    ("packet", "reason_code"),
    [
        (b"\x34\x07\x00\x01t\x00\x01hi", wire.QOS_NOT_SUPPORTED),  # QoS 2
        (b"\x36\x07\x00\x01t\x00\x01hi", wire.MALFORMED_PACKET),  # QoS 3
        (b"\x32\x07\x00\x01t\x00\x00hi", wire.MALFORMED_PACKET),  # QoS 1, packet identifier 0
        (b"\x38\x05\x00\x01thi", wire.MALFORMED_PACKET),  # QoS 0 with DUP
        (b"\x30\x04\x00\x00hi", wire.PROTOCOL_ERROR),  # empty topic in 3.1.1
    ],
)
def test_publish_the_fast_parser_leaves_is_refused_by_the_careful_one(packet: bytes, reason_code: int) -> None:
    assert wire.take_publishes(packet, 0, PROTOCOL_311, lambda *m: None, 10) == 0
    with pytest.raises(MqttProtocolError) as refused:
        wire.parse_publish(packet, frame_of(packet), PROTOCOL_311)
    assert refused.value.reason_code == reason_code


# -- PUBACK, PINGREQ/PINGRESP, DISCONNECT (3.1.1 §3.4, §3.12-3.14; 5.0 §3.4, §3.12-3.14) ------------------
def test_puback_is_four_bytes_and_many_go_out_as_one_buffer() -> None:
    assert wire.build_puback(10) == b"\x40\x02\x00\x0a"
    assert wire.build_pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_puback_5_reason_codes_with_and_without_properties() -> None:
    cases = [(b"\x40\x02\x00\x0a", 0), (b"\x40\x03\x00\x0a\x10", 0x10), (b"\x40\x04\x00\x0a\x97\x00", 0x97)]
    for packet, code in cases:
        ack = wire.parse_puback(packet, frame_of(packet), PROTOCOL_5)
        assert (ack.packet_id, ack.reason_code) == (10, code)
    with pytest.raises(MqttProtocolError):
        wire.parse_puback(b"\x40\x03\x00\x0a\x10", frame_of(b"\x40\x03\x00\x0a\x10"), PROTOCOL_311)


def test_ping_packets_are_two_bytes() -> None:
    assert wire.PINGREQ_PACKET == b"\xc0\x00"
    assert wire.PINGRESP_PACKET == b"\xd0\x00"


def test_disconnect_normal_is_two_bytes_and_5_carries_a_reason() -> None:
    assert wire.build_disconnect(PROTOCOL_311) == b"\xe0\x00"
    assert wire.build_disconnect(PROTOCOL_5) == b"\xe0\x00"
    assert wire.build_disconnect(PROTOCOL_5, wire.MALFORMED_PACKET) == b"\xe0\x01\x81"
    packet = b"\xe0\x06\x8b\x04\x1f\x00\x01x"  # server shutting down, reason string "x"
    code, props = wire.parse_disconnect(packet, frame_of(packet), PROTOCOL_5)
    assert code == 0x8B and wire.property_str(props, wire.REASON_STRING) == "x"
    assert wire.parse_disconnect(b"\xe0\x00", frame_of(b"\xe0\x00"), PROTOCOL_5) == (0, [])


# -- framing and the fast path over streams --------------------------------------------------------------
def test_read_frame_waits_for_a_whole_packet_and_refuses_one_over_the_bound() -> None:
    packet = wire.build_publish("a/b", b"x" * 200, protocol=PROTOCOL_5, qos=1, packet_id=3)
    for cut in range(len(packet)):
        assert wire.read_frame(packet[:cut], 0) is None
    assert frame_of(packet).packet_type == wire.PUBLISH
    with pytest.raises(MqttProtocolError) as refused:
        wire.read_frame(packet[:3], 0, max_packet_size=100)  # the length alone says it is too large
    assert refused.value.reason_code == wire.PACKET_TOO_LARGE


OTHER_PACKETS = [b"\xd0\x00", b"\x90\x03\x00\x01\x01", b"\x40\x02\x00\x07"]  # PINGRESP, SUBACK, PUBACK
TOPICS = st.binary(min_size=1, max_size=40).filter(lambda t: b"\x00" not in t) | st.sampled_from(
    [b"citysense/v1/airbox/box-1/up", "LASS/Test/PM25/\u6e2c".encode()]
)
PROPERTIES = st.sampled_from([b"", b"\x03\x00\x04json", b"\x26\x00\x01k\x00\x02vv", b"\x0b\x80\x01"])
Expected = list[tuple[bytes, bytes, int, int] | None]


@st.composite
def streams(draw: st.DrawFn, mqtt5: bool) -> tuple[list[bytes], Expected]:
    """Packets built by tests/mqtt_packets.py (written from the spec, independent of mqtt_wire)."""
    packets: list[bytes] = []
    expected: Expected = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 9)) == 0:
            packets.append(draw(st.sampled_from(OTHER_PACKETS)))
            expected.append(None)
            continue
        qos = draw(st.integers(0, 2))
        packet_id = draw(st.integers(1, 65535)) if qos else 0
        topic, payload = draw(TOPICS), draw(st.binary(max_size=300))
        packets.append(publish(topic, payload, qos, packet_id, draw(PROPERTIES) if mqtt5 else None))
        expected.append((topic, payload, packet_id, qos) if qos < 2 else None)
    return packets, expected


Case = tuple[bool, tuple[list[bytes], Expected]]
CASES = st.booleans().flatmap(lambda v5: st.tuples(st.just(v5), streams(v5)))


@settings(max_examples=300, deadline=None)
@given(CASES)
def test_fast_parser_takes_the_leading_publishes_as_the_careful_parser_reads_them(case: Case) -> None:
    mqtt5, (packets, expected) = case
    protocol = PROTOCOL_5 if mqtt5 else PROTOCOL_311
    buf = b"".join(packets)
    got: list[tuple[str, bytes, int, int]] = []
    pos = wire.take_publishes(buf, 0, protocol, lambda *m: got.append(m), limit=1000)
    leading = next((i for i, e in enumerate(expected) if e is None), len(expected))
    assert len(got) == leading
    assert pos == sum(len(p) for p in packets[:leading])  # stops at the start of a packet
    for packet, mine, want in zip(packets, got, expected, strict=False):
        careful = wire.parse_publish(packet, frame_of(packet), protocol)
        assert mine == (careful.topic, careful.payload, careful.packet_id, careful.qos)
        assert want is not None and mine == (want[0].decode("utf-8", "replace"), want[1], want[2], want[3])


@settings(max_examples=200, deadline=None)
@given(CASES, st.data())
def test_fast_parser_never_takes_a_cut_packet(case: Case, data: st.DataObject) -> None:
    mqtt5, (packets, _) = case
    protocol = PROTOCOL_5 if mqtt5 else PROTOCOL_311
    buf = b"".join(packets)
    cut = data.draw(st.integers(0, len(buf)))
    got: list[tuple[str, bytes, int, int]] = []
    pos = wire.take_publishes(buf[:cut], 0, protocol, lambda *m: got.append(m), limit=1000)
    boundaries = {0}
    total = 0
    for p in packets:
        total += len(p)
        boundaries.add(total)
    assert pos in boundaries and pos <= cut
    whole: list[tuple[str, bytes, int, int]] = []
    wire.take_publishes(buf, 0, protocol, lambda *m: whole.append(m), limit=1000)
    assert got == whole[: len(got)]


def test_fast_parser_stops_at_the_limit_on_a_packet_boundary() -> None:
    buf = b"".join(publish(b"a/b", b"x" * i, 1, i + 1, None) for i in range(10))
    got: list[tuple[str, bytes, int, int]] = []
    pos = wire.take_publishes(buf, 0, PROTOCOL_311, lambda *m: got.append(m), limit=4)
    assert [m[2] for m in got] == [1, 2, 3, 4]
    assert wire.take_publishes(buf, pos, PROTOCOL_311, lambda *m: got.append(m), limit=100) == len(buf)
    assert [m[2] for m in got] == list(range(1, 11))
