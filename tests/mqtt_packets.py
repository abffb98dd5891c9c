"""MQTT packets built by hand for tests that play the broker's side of the wire."""

from __future__ import annotations


def remaining_length(n: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes | None) -> bytes:
    """A PUBLISH packet; `props` is None for MQTT 3.1.1, the property bytes for MQTT 5."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:
        body += remaining_length(len(props)) + props
    return bytes([0x30 | (qos << 1)]) + remaining_length(len(body + payload)) + body + payload
