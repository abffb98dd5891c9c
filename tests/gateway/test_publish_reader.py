"""The gateway's own PUBLISH parser agrees with paho's on every packet it takes, and
leaves every packet it does not take, whole, for paho: generated packet streams, cut
at every possible byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.publish_reader import take_publishes
from tests.mqtt_packets import publish

# PINGRESP, SUBACK, PUBACK: packets only paho handles
OTHER_PACKETS = [b"\xd0\x00", b"\x90\x03\x00\x01\x01", b"\x40\x02\x00\x07"]

topics = st.binary(min_size=1, max_size=40).filter(lambda t: b"\x00" not in t) | st.sampled_from(
    [b"citysense/v1/airbox/box-1/up", "LASS/Test/PM25/\u6e2c".encode()]
)
# content type (0x03) and user property (0x26): both legal on PUBLISH
properties = st.sampled_from([b"", b"\x03\x00\x04json", b"\x26\x00\x01k\x00\x02vv"])


Expected = list[tuple[bytes, bytes, int, int] | None]
Case = tuple[bool, tuple[list[bytes], Expected]]


@st.composite
def streams(draw: st.DrawFn, mqtt5: bool) -> tuple[list[bytes], Expected]:
    packets: list[bytes] = []
    expected: Expected = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 9)) == 0:
            packets.append(draw(st.sampled_from(OTHER_PACKETS)))
            expected.append(None)
            continue
        qos = draw(st.integers(0, 2))
        mid = draw(st.integers(1, 65535)) if qos else 0
        topic = draw(topics)
        payload = draw(st.binary(max_size=300))
        packets.append(publish(topic, payload, qos, mid, draw(properties) if mqtt5 else None))
        expected.append((topic, payload, mid, qos) if qos < 2 else None)
    return packets, expected


@settings(max_examples=300, deadline=None)
@given(st.booleans().flatmap(lambda v5: st.tuples(st.just(v5), streams(v5))))
def test_publish_reader_takes_the_leading_publishes_as_paho_decodes_them(case: Case) -> None:
    mqtt5, (packets, expected) = case
    buf = b"".join(packets)
    got: list[tuple[str, bytes, int, int]] = []
    pos = take_publishes(buf, 0, mqtt5, lambda *m: got.append(m), limit=1000)
    leading = 0
    while leading < len(expected) and expected[leading] is not None:
        leading += 1
    assert len(got) == leading
    assert pos == sum(len(p) for p in packets[:leading])  # stops at the start of a packet
    protocol = MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311
    for packet, mine in zip(packets, got, strict=False):
        theirs = _packet.decode_publish(packet[0], after_fixed_header(packet), protocol)
        assert mine == (theirs.topic.decode("utf-8", "replace"), theirs.payload, theirs.mid, theirs.qos)


def after_fixed_header(packet: bytes) -> bytes:
    i = 1
    while packet[i] & 0x80:
        i += 1
    return packet[i + 1 :]


@settings(max_examples=200, deadline=None)
@given(st.booleans().flatmap(lambda v5: st.tuples(st.just(v5), streams(v5))), st.data())
def test_publish_reader_never_takes_a_cut_packet(case: Case, data: st.DataObject) -> None:
    mqtt5, (packets, _expected) = case
    buf = b"".join(packets)
    cut = data.draw(st.integers(0, len(buf)))
    got: list[tuple[str, bytes, int, int]] = []
    pos = take_publishes(buf[:cut], 0, mqtt5, lambda *m: got.append(m), limit=1000)
    boundaries = {0}
    total = 0
    for p in packets:
        total += len(p)
        boundaries.add(total)
    assert pos in boundaries and pos <= cut
    # and what it took from the cut buffer is what it takes from the whole one
    whole: list[tuple[str, bytes, int, int]] = []
    take_publishes(buf, 0, mqtt5, lambda *m: whole.append(m), limit=1000)
    assert got == whole[: len(got)]


def test_publish_reader_stops_at_the_limit_on_a_packet_boundary() -> None:
    buf = b"".join(publish(b"a/b", b"x" * i, 1, i + 1, None) for i in range(10))
    got: list[tuple[str, bytes, int, int]] = []
    pos = take_publishes(buf, 0, False, lambda *m: got.append(m), limit=4)
    assert [m[2] for m in got] == [1, 2, 3, 4]
    assert take_publishes(buf, pos, False, lambda *m: got.append(m), limit=100) == len(buf)
    assert [m[2] for m in got] == list(range(1, 11))


def test_publish_reader_leaves_a_zero_packet_id_and_an_empty_topic_to_paho() -> None:
    for bad in (publish(b"a", b"p", 1, 0, None), publish(b"", b"p", 0, 0, None)):
        assert take_publishes(bad, 0, False, lambda *m: None, limit=10) == 0
