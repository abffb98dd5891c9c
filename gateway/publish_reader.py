"""PUBLISH packets parsed straight out of the receive buffer: the gateway's hot path.

paho handles one packet per call and builds, for each, a packet dict, an `MQTTMessage` and
(MQTT 5) a `Properties` object, then looks the topic up in its callback tree: about 30 µs
of CPU per message, most of what the gateway spent per message (py-spy under `citysense
bench ingest`). A run of whole QoS 0/1 PUBLISH packets is the common case, and this loop
takes it in one pass. Everything else (CONNACK, SUBACK, PINGRESP, QoS 2, a packet cut by
the end of the buffer, anything malformed) is left where it is for paho to handle, so the
protocol's state machine stays paho's.

Publish properties (MQTT 5) are skipped: the gateway uses none, and without a Topic Alias
Maximum in our CONNECT the broker may not send topic aliases.
"""

from __future__ import annotations

from collections.abc import Callable

PUBLISH = 0x30
# Parsed publishes are handed over as (topic, payload, mid, qos).
Sink = Callable[[str, bytes, int, int], None]


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """MQTT variable byte integer at `pos`: (value, position after it), None if cut or too long."""
    value = 0
    shift = 0
    for i in range(pos, min(pos + 4, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return None


def take_publishes(buf: bytes, pos: int, mqtt5: bool, sink: Sink, limit: int) -> int:
    """Parse whole QoS 0/1 PUBLISH packets from `buf[pos:]` into `sink`, at most `limit`.

    Returns the position of the first byte not consumed: the start of a packet that is not
    such a PUBLISH, or is incomplete, or does not parse (paho then reads it and reports).
    """
    end = len(buf)
    taken = 0
    while taken < limit and pos < end:
        command = buf[pos]
        if command & 0xF0 != PUBLISH:
            break
        qos = (command >> 1) & 0x03
        if qos > 1:
            break
        if pos + 3 < end and buf[pos + 1] < 0x80:  # one length byte: packets under 128 bytes
            remaining, body = buf[pos + 1], pos + 2
        elif pos + 3 < end and buf[pos + 2] < 0x80:  # two: under 16 KB, the usual reading
            remaining, body = (buf[pos + 1] & 0x7F) | (buf[pos + 2] << 7), pos + 3
        else:
            length = _varint(buf, pos + 1, end)
            if length is None:
                break
            remaining, body = length
        stop = body + remaining
        if stop > end or remaining < 2:
            break
        topic_length = (buf[body] << 8) | buf[body + 1]
        if not topic_length:
            break  # a topic alias (MQTT 5) or a protocol error (3.1.1): paho's to handle
        topic_end = body + 2 + topic_length
        cursor = topic_end
        mid = 0
        if qos:
            cursor += 2
            if cursor > stop:
                break
            mid = (buf[topic_end] << 8) | buf[topic_end + 1]
            if mid == 0:
                break  # a protocol error paho reports
        if mqtt5:
            if cursor < stop and buf[cursor] == 0:  # no properties, the usual case
                cursor += 1
            else:
                props = _varint(buf, cursor, stop)
                if props is None:
                    break
                cursor = props[1] + props[0]
        if cursor > stop:
            break
        sink(buf[body + 2 : topic_end].decode("utf-8", "replace"), buf[cursor:stop], mid, qos)
        pos = stop
        taken += 1
    return pos
