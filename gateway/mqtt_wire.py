"""The MQTT wire format the gateway speaks (3.1.1 and 5.0): packets built and parsed, no I/O.

What it covers, for a subscriber that acknowledges after commit and publishes receipts:
CONNECT (no will), CONNACK, SUBSCRIBE, SUBACK, PUBLISH at QoS 0 and 1, PUBACK, PINGREQ,
PINGRESP and DISCONNECT. Section numbers below are those of the OASIS specifications
(MQTT 3.1.1, 29 October 2014; MQTT 5.0, 7 March 2019).

What it refuses, with `MqttProtocolError` and the MQTT 5 reason code a DISCONNECT carries:
QoS 2 (the gateway never subscribes above QoS 1, so a broker must not send it), a PUBLISH
that names its topic only by a Topic Alias (the gateway's CONNECT sends no Topic Alias
Maximum, so the broker may not use aliases, §3.3.2.3.4), a packet larger than the bound
given, and bytes that break the layout. UNSUBSCRIBE, QoS 2 flows, AUTH and wills are not
written: the gateway uses none of them.

One departure: a topic that is not valid UTF-8 is decoded with replacement characters
instead of closing the connection (§1.5.4 would close it), because the broker would then
redeliver the same message forever; the codec dead-letters it instead.

The hot path is `take_publishes`: a run of whole QoS 0/1 PUBLISH packets parsed straight
out of a receive buffer in one loop, with no object per packet other than the topic and
payload it hands over (see devtools/bench/mqtt_wire_speed.py for its speed).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

PROTOCOL_311 = 4  # protocol level byte of MQTT 3.1.1 (§3.1.2.2)
PROTOCOL_5 = 5

# packet types: the high nibble of the first byte (§2.2.1 in 3.1.1, §2.1.2 in 5.0)
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x80
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
MAX_REMAINING_LENGTH = 268_435_455  # four bytes of variable byte integer (§1.5.5 / §2.2.3)

# MQTT 5 property identifiers (§2.2.2.2) the gateway reads or writes
SESSION_EXPIRY_INTERVAL = 0x11
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
MAXIMUM_PACKET_SIZE = 0x27

# MQTT 5 reason codes (§2.4) the gateway sends when it closes a connection
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
PACKET_TOO_LARGE = 0x95
TOPIC_ALIAS_INVALID = 0x94
QOS_NOT_SUPPORTED = 0x9B

# the value type of every property (§2.2.2.2): how many bytes it takes and how to read it
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
PROPERTY_TYPES: dict[int, int] = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _FOUR,
    0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}

PropertyValue = int | str | bytes | tuple[str, str]
Properties = list[tuple[int, PropertyValue]]
"""MQTT 5 properties in wire order; User Property (0x26) and Subscription Identifier may repeat."""

# CONNACK return codes of MQTT 3.1.1 (§3.2.2.3) and the MQTT 5 reason codes (§2.4), for logs
CONNACK_311_REASONS = {
    0: "accepted", 1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}
REASON_NAMES = {
    0x00: "success", 0x01: "granted qos 1", 0x02: "granted qos 2", 0x04: "disconnect with will message",
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
    0x8E: "session taken over", 0x8F: "topic filter invalid", 0x90: "topic name invalid",
    0x91: "packet identifier in use", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
    0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
    0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
    0x9B: "qos not supported", 0x9C: "use another server", 0x9D: "server moved",
    0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported", 0xA2: "wildcard subscriptions not supported",
}

_PUBACK_STRUCT = struct.Struct("!BBH")  # 0x40, remaining length 2, packet identifier
_TWO_BYTES = struct.Struct("!H")
_FOUR_BYTES = struct.Struct("!I")


class MqttProtocolError(Exception):
    """Bytes from the peer that break the specification or that the gateway refuses.

    `reason_code` is the MQTT 5 reason code of the DISCONNECT the session sends before it
    closes the connection (MQTT 3.1.1 has no way to say why; the connection just closes).
    """

    def __init__(self, reason: str, reason_code: int = MALFORMED_PACKET) -> None:
        super().__init__(reason)
        self.reason_code = reason_code


def reason_name(code: int, protocol: int = PROTOCOL_5) -> str:
    """A reason code as a person reads it in a log line (CONNACK codes of 3.1.1 differ)."""
    names = CONNACK_311_REASONS if protocol == PROTOCOL_311 else REASON_NAMES
    return f"{names.get(code, 'unknown')} (0x{code:02x})"


# -- primitives -------------------------------------------------------------------------------
def encode_varint(value: int) -> bytes:
    """Variable Byte Integer (§1.5.5 / §2.2.3): 7 bits a byte, least significant first."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer (0..{MAX_REMAINING_LENGTH})")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """The Variable Byte Integer at `pos`: (value, position after it), None if cut by `end`.

    More than four bytes is a malformed packet (§1.5.5).
    """
    value = 0
    shift = 0
    for i in range(pos, min(pos + 4, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if end - pos >= 4:
        raise MqttProtocolError("variable byte integer longer than 4 bytes")
    return None


def encode_string(text: str | bytes) -> bytes:
    """UTF-8 Encoded String (§1.5.3 / §1.5.4) or Binary Data (§1.5.6): 2-byte length, then bytes."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > 0xFFFF:
        raise ValueError(f"string of {len(data)} bytes is longer than MQTT's 65535")
    return _TWO_BYTES.pack(len(data)) + data


def _take_bytes(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MqttProtocolError("string length cut by the end of the packet")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MqttProtocolError("string runs past the end of the packet")
    return buf[pos + 2 : stop], stop


def decode_string(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """A UTF-8 Encoded String at `pos`: (text, position after it); invalid UTF-8 is replaced."""
    data, stop = _take_bytes(buf, pos, end)
    return data.decode("utf-8", "replace"), stop


def _fixed_header(first_byte: int, body_length: int) -> bytes:
    return bytes([first_byte]) + encode_varint(body_length)


def _packet(first_byte: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return _fixed_header(first_byte, len(body)) + body


# -- properties (MQTT 5 only) -------------------------------------------------------------------
def encode_properties(properties: Sequence[tuple[int, PropertyValue]]) -> bytes:
    """A property list with its length in front (§2.2.2); empty is the single byte 0."""
    out = bytearray()
    for ident, value in properties:
        kind = PROPERTY_TYPES.get(ident)
        if kind is None:
            raise ValueError(f"unknown MQTT 5 property 0x{ident:02x}")
        out += encode_varint(ident)
        if kind == _PAIR:
            assert isinstance(value, tuple)
            out += encode_string(value[0]) + encode_string(value[1])
        elif kind in (_UTF8, _BINARY):
            assert isinstance(value, str | bytes)
            out += encode_string(value)
        else:
            assert isinstance(value, int)
            if kind == _BYTE:
                out.append(value)
            elif kind == _TWO:
                out += _TWO_BYTES.pack(value)
            elif kind == _FOUR:
                out += _FOUR_BYTES.pack(value)
            else:
                out += encode_varint(value)
    return encode_varint(len(out)) + bytes(out)


def decode_properties(buf: bytes, pos: int, end: int) -> tuple[Properties, int]:
    """The property list at `pos` (length first): (properties, position after them)."""
    length = decode_varint(buf, pos, end)
    if length is None:
        raise MqttProtocolError("property length cut by the end of the packet")
    size, cursor = length
    stop = cursor + size
    if stop > end:
        raise MqttProtocolError("properties run past the end of the packet")
    props: Properties = []
    while cursor < stop:
        ident_at = decode_varint(buf, cursor, stop)
        if ident_at is None:
            raise MqttProtocolError("property identifier cut")
        ident, cursor = ident_at
        kind = PROPERTY_TYPES.get(ident)
        value: PropertyValue
        if kind is None:
            raise MqttProtocolError(f"unknown property identifier 0x{ident:02x}")
        if kind == _BYTE:
            if cursor + 1 > stop:
                raise MqttProtocolError(f"property 0x{ident:02x} cut")
            value, cursor = buf[cursor], cursor + 1
        elif kind == _TWO:
            if cursor + 2 > stop:
                raise MqttProtocolError(f"property 0x{ident:02x} cut")
            value, cursor = _TWO_BYTES.unpack_from(buf, cursor)[0], cursor + 2
        elif kind == _FOUR:
            if cursor + 4 > stop:
                raise MqttProtocolError(f"property 0x{ident:02x} cut")
            value, cursor = _FOUR_BYTES.unpack_from(buf, cursor)[0], cursor + 4
        elif kind == _VARINT:
            number = decode_varint(buf, cursor, stop)
            if number is None:
                raise MqttProtocolError(f"property 0x{ident:02x} cut")
            value, cursor = number
        elif kind == _UTF8:
            value, cursor = decode_string(buf, cursor, stop)
        elif kind == _BINARY:
            value, cursor = _take_bytes(buf, cursor, stop)
        else:
            name, cursor = decode_string(buf, cursor, stop)
            text, cursor = decode_string(buf, cursor, stop)
            value = (name, text)
        props.append((ident, value))
    return props, stop


def property_int(properties: Properties, ident: int) -> int | None:
    """The first integer value of property `ident`, None when absent."""
    for key, value in properties:
        if key == ident and isinstance(value, int):
            return value
    return None


def property_str(properties: Properties, ident: int) -> str | None:
    """The first text value of property `ident`, None when absent."""
    for key, value in properties:
        if key == ident and isinstance(value, str):
            return value
    return None


# -- framing -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Frame:
    """One whole packet in a buffer: its first byte and where its body starts and ends."""

    first_byte: int
    body: int
    end: int

    @property
    def packet_type(self) -> int:
        return self.first_byte & 0xF0


def read_frame(buf: bytes, pos: int, max_packet_size: int = MAX_REMAINING_LENGTH + 5) -> Frame | None:
    """The packet starting at `buf[pos]`, or None until all of it is in the buffer.

    A packet whose whole size (fixed header included) exceeds `max_packet_size` is refused as
    soon as its length is known, so a peer cannot make the receive buffer grow without bound.
    """
    end = len(buf)
    length = decode_varint(buf, pos + 1, end)
    if length is None:
        return None
    remaining, body = length
    if body - pos + remaining > max_packet_size:
        raise MqttProtocolError(
            f"packet of {body - pos + remaining} bytes is larger than {max_packet_size}", PACKET_TOO_LARGE
        )
    if body + remaining > end:
        return None
    return Frame(buf[pos], body, body + remaining)


# -- CONNECT / CONNACK (§3.1, §3.2) ---------------------------------------------------------------
def build_connect(
    client_id: str,
    *,
    protocol: int = PROTOCOL_5,
    keepalive_s: int = 30,
    clean_start: bool = False,
    session_expiry_s: int = 0,
    receive_maximum: int = 65535,
    maximum_packet_size: int | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT. `clean_start=False` asks the broker to keep the session (3.1.1 calls it
    Clean Session); MQTT 5 keeps it only for `session_expiry_s` after the connection ends
    (0 = ends with it), so a persistent session needs both. Receive Maximum and Maximum
    Packet Size are MQTT 5 only (3.1.1 has no properties)."""
    if protocol not in (PROTOCOL_311, PROTOCOL_5):
        raise ValueError(f"unknown protocol level {protocol}")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError(f"keep alive {keepalive_s} s does not fit two bytes")
    if password is not None and username is None and protocol == PROTOCOL_311:
        raise ValueError("MQTT 3.1.1 sends a password only with a user name (§3.1.2.9)")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_start else 0
    variable = encode_string("MQTT") + bytes([protocol, flags]) + _TWO_BYTES.pack(keepalive_s)
    if protocol == PROTOCOL_5:
        props: Properties = []
        if session_expiry_s:
            props.append((SESSION_EXPIRY_INTERVAL, session_expiry_s))
        if receive_maximum != 65535:
            props.append((RECEIVE_MAXIMUM, receive_maximum))
        if maximum_packet_size is not None:
            props.append((MAXIMUM_PACKET_SIZE, maximum_packet_size))
        variable += encode_properties(props)
    payload = encode_string(client_id)
    if username is not None:
        payload += encode_string(username)
    if password is not None:
        payload += encode_string(password)
    return _packet(CONNECT, variable, payload)


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason_code: int  # the return code in 3.1.1: 0 accepted, 1..5 refused
    properties: Properties = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.reason_code == 0


def parse_connack(buf: bytes, frame: Frame, protocol: int) -> Connack:
    body, end = frame.body, frame.end
    if frame.first_byte != CONNACK:
        raise MqttProtocolError(f"CONNACK with flags 0x{frame.first_byte:02x}")
    if end - body < 2 or (protocol == PROTOCOL_311 and end - body != 2):
        raise MqttProtocolError(f"CONNACK of {end - body} bytes")
    ack_flags = buf[body]
    if ack_flags & 0xFE:
        raise MqttProtocolError(f"CONNACK acknowledge flags 0x{ack_flags:02x} set reserved bits")
    props: Properties = []
    if protocol == PROTOCOL_5:
        props, stop = decode_properties(buf, body + 2, end) if end > body + 2 else ([], end)
        if stop != end:
            raise MqttProtocolError("bytes after the CONNACK properties")
    return Connack(bool(ack_flags & 0x01), buf[body + 1], props)


# -- SUBSCRIBE / SUBACK (§3.8, §3.9) -----------------------------------------------------------------
def subscription_options(
    qos: int, *, no_local: bool = False, retain_as_published: bool = False, retain_handling: int = 0
) -> int:
    """The options byte of one topic filter (§3.8.3.1); in 3.1.1 only `qos` may be set.

    No Local must stay off on a shared subscription ($share/...), where it is a protocol error.
    """
    if qos not in (0, 1, 2) or retain_handling not in (0, 1, 2):
        raise ValueError(f"qos {qos} / retain handling {retain_handling} out of range")
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (retain_handling << 4)


def build_subscribe(packet_id: int, filters: Iterable[tuple[str, int]], protocol: int) -> bytes:
    """SUBSCRIBE for (topic filter, options byte) pairs; fixed header flags are 0010 (§3.8.1)."""
    if not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier {packet_id} out of 1..65535")
    payload = bytearray()
    for topic_filter, options in filters:
        if protocol == PROTOCOL_311 and options & ~0x03:
            raise ValueError("MQTT 3.1.1 has only the QoS bits in a subscription")
        payload += encode_string(topic_filter) + bytes([options])
    if not payload:
        raise ValueError("SUBSCRIBE needs at least one topic filter (§3.8.3)")
    variable = _TWO_BYTES.pack(packet_id) + (encode_properties([]) if protocol == PROTOCOL_5 else b"")
    return _packet(SUBSCRIBE | 0x02, variable, bytes(payload))


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]  # granted QoS 0..2, or >= 0x80 for a refused filter
    properties: Properties = field(default_factory=list)

    @property
    def refused(self) -> list[int]:
        return [code for code in self.reason_codes if code >= 0x80]


def parse_suback(buf: bytes, frame: Frame, protocol: int) -> Suback:
    body, end = frame.body, frame.end
    if frame.first_byte != SUBACK or end - body < 3:
        raise MqttProtocolError("SUBACK too short or with flags set")
    packet_id = (buf[body] << 8) | buf[body + 1]
    cursor = body + 2
    props: Properties = []
    if protocol == PROTOCOL_5:
        props, cursor = decode_properties(buf, cursor, end)
    codes = list(buf[cursor:end])
    if not codes:
        raise MqttProtocolError("SUBACK without reason codes")
    return Suback(packet_id, codes, props)


# -- PUBLISH (§3.3) ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int = 0  # 0 at QoS 0, which has none
    retain: bool = False
    dup: bool = False
    properties: Properties = field(default_factory=list)


def build_publish(
    topic: str,
    payload: bytes,
    *,
    protocol: int,
    qos: int = 0,
    packet_id: int = 0,
    retain: bool = False,
    dup: bool = False,
    properties: Sequence[tuple[int, PropertyValue]] = (),
) -> bytes:
    if qos not in (0, 1):
        raise ValueError(f"QoS {qos}: the gateway publishes at QoS 0 or 1 only")
    if qos and not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier {packet_id} out of 1..65535")
    if not qos and (packet_id or dup):
        raise ValueError("QoS 0 has no packet identifier and no DUP flag (§3.3.1.1)")
    if not topic or any(c in topic for c in "+#\x00"):
        raise ValueError(f"topic name {topic!r} is empty or holds a wildcard (§4.7.1)")
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    variable = encode_string(topic) + (_TWO_BYTES.pack(packet_id) if qos else b"")
    if protocol == PROTOCOL_5:
        variable += encode_properties(properties)
    elif properties:
        raise ValueError("MQTT 3.1.1 has no properties")
    return _packet(first, variable, payload)


def parse_publish(buf: bytes, frame: Frame, protocol: int) -> Publish:
    """One PUBLISH, every field checked (the careful path; `take_publishes` is the fast one)."""
    first, body, end = frame.first_byte, frame.body, frame.end
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise MqttProtocolError("PUBLISH with QoS 3")
    if qos == 2:
        raise MqttProtocolError("PUBLISH at QoS 2: the gateway subscribes at QoS 1 at most", QOS_NOT_SUPPORTED)
    if not qos and first & 0x08:
        raise MqttProtocolError("PUBLISH at QoS 0 with the DUP flag (§3.3.1.1)")
    topic_bytes, cursor = _take_bytes(buf, body, end)
    packet_id = 0
    if qos:
        if cursor + 2 > end:
            raise MqttProtocolError("PUBLISH packet identifier cut")
        packet_id = (buf[cursor] << 8) | buf[cursor + 1]
        if not packet_id:
            raise MqttProtocolError("PUBLISH at QoS 1 with packet identifier 0 (§2.3.1)")
        cursor += 2
    props: Properties = []
    if protocol == PROTOCOL_5:
        props, cursor = decode_properties(buf, cursor, end)
    if not topic_bytes:
        if protocol == PROTOCOL_5 and property_int(props, TOPIC_ALIAS) is not None:
            raise MqttProtocolError("PUBLISH by Topic Alias, which the gateway never allowed", TOPIC_ALIAS_INVALID)
        raise MqttProtocolError("PUBLISH with an empty topic name", PROTOCOL_ERROR)
    return Publish(
        topic_bytes.decode("utf-8", "replace"), buf[cursor:end], qos, packet_id, bool(first & 0x01),
        bool(first & 0x08), props,
    )


Sink = Callable[[str, bytes, int, int], None]
"""Receives each PUBLISH `take_publishes` parses, as (topic, payload, packet id, qos)."""


def take_publishes(buf: bytes, pos: int, protocol: int, sink: Sink, limit: int) -> int:
    """Parse whole QoS 0/1 PUBLISH packets from `buf[pos:]` into `sink`, at most `limit`.

    Returns the position of the first byte not consumed: the start of a packet that is not
    such a PUBLISH, or is cut by the end of the buffer, or is anything unusual (no topic,
    packet identifier 0, a property length that does not fit). The caller hands that
    packet to `read_frame` and the careful parsers, which accept it or say why not. MQTT 5
    properties are skipped by their length: the gateway reads none of them.
    """
    mqtt5 = protocol == PROTOCOL_5
    end = len(buf)
    taken = 0
    while taken < limit and pos < end:
        command = buf[pos]
        if command & 0xF0 != PUBLISH:
            break
        qos = (command >> 1) & 0x03
        if qos > 1 or command == 0x38:  # QoS 2 or 3, or QoS 0 with DUP: the careful path says why
            break
        if pos + 3 < end and buf[pos + 1] < 0x80:  # one length byte: packets under 128 bytes
            remaining, body = buf[pos + 1], pos + 2
        elif pos + 3 < end and buf[pos + 2] < 0x80:  # two: under 16 KB, the usual reading
            remaining, body = (buf[pos + 1] & 0x7F) | (buf[pos + 2] << 7), pos + 3
        else:
            length = decode_varint(buf, pos + 1, end)
            if length is None:
                break
            remaining, body = length
        stop = body + remaining
        if stop > end or remaining < 2:
            break
        topic_length = (buf[body] << 8) | buf[body + 1]
        if not topic_length:
            break
        topic_end = body + 2 + topic_length
        cursor = topic_end
        packet_id = 0
        if qos:
            cursor += 2
            if cursor > stop:
                break
            packet_id = (buf[topic_end] << 8) | buf[topic_end + 1]
            if not packet_id:
                break
        if mqtt5:
            if cursor < stop and buf[cursor] == 0:  # no properties, the usual case
                cursor += 1
            else:
                props = decode_varint(buf, cursor, stop)
                if props is None:
                    break
                cursor = props[1] + props[0]
        if cursor > stop:
            break
        sink(buf[body + 2 : topic_end].decode("utf-8", "replace"), buf[cursor:stop], packet_id, qos)
        pos = stop
        taken += 1
    return pos


# -- PUBACK (§3.4) -------------------------------------------------------------------------------------
def build_puback(packet_id: int) -> bytes:
    """PUBACK: 4 bytes in both versions (MQTT 5 may leave out reason code 0 and no properties,
    §3.4.2.1)."""
    return _PUBACK_STRUCT.pack(PUBACK, 2, packet_id)


def build_pubacks(packet_ids: Iterable[int]) -> bytes:
    """Many PUBACKs as one buffer, for one write after a batch commits."""
    pack = _PUBACK_STRUCT.pack
    return b"".join([pack(PUBACK, 2, packet_id) for packet_id in packet_ids])


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0  # MQTT 5: >= 0x80 means the broker did not accept the message
    properties: Properties = field(default_factory=list)


def parse_puback(buf: bytes, frame: Frame, protocol: int) -> Puback:
    body, end = frame.body, frame.end
    if frame.first_byte != PUBACK or end - body < 2 or (protocol == PROTOCOL_311 and end - body != 2):
        raise MqttProtocolError(f"PUBACK of {end - body} bytes or with flags set")
    packet_id = (buf[body] << 8) | buf[body + 1]
    if protocol == PROTOCOL_311 or end == body + 2:
        return Puback(packet_id)
    props: Properties = []
    if end > body + 3:
        props, stop = decode_properties(buf, body + 3, end)
        if stop != end:
            raise MqttProtocolError("bytes after the PUBACK properties")
    return Puback(packet_id, buf[body + 2], props)


# -- DISCONNECT (§3.14) ----------------------------------------------------------------------------------
def build_disconnect(protocol: int, reason_code: int = 0) -> bytes:
    """DISCONNECT; in MQTT 5 reason 0 (normal) keeps the session for its expiry interval."""
    if protocol == PROTOCOL_311 or reason_code == 0:
        return b"\xe0\x00"
    return _packet(DISCONNECT, bytes([reason_code]))


def parse_disconnect(buf: bytes, frame: Frame, protocol: int) -> tuple[int, Properties]:
    """A DISCONNECT from the broker (MQTT 5 only; 3.1.1 brokers just close): (reason, properties)."""
    body, end = frame.body, frame.end
    if protocol == PROTOCOL_311:
        raise MqttProtocolError("a broker sent DISCONNECT, which MQTT 3.1.1 does not allow", PROTOCOL_ERROR)
    if end == body:
        return 0, []
    props: Properties = []
    if end > body + 1:
        props, _ = decode_properties(buf, body + 1, end)
    return buf[body], props
