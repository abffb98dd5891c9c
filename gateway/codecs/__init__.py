"""Wire formats: one module per format, each a pure function (topic, payload, received_at) -> Decoded."""

from __future__ import annotations

from collections.abc import Callable

from contracts.limits import MAX_PAYLOAD_BYTES
from contracts.records import Decoded, DecodeError
from contracts.topics import is_chirpstack_topic
from gateway.codecs.chirpstack import decode_chirpstack_status, decode_chirpstack_up
from gateway.codecs.lass import decode_lass
from gateway.codecs.status import decode_status
from gateway.codecs.v1 import decode_v1

Codec = Callable[[str, bytes, float], Decoded]


def codec_for(topic: str) -> tuple[str, Codec]:
    """Pick the codec from the topic alone, so a payload can never choose its own parser."""
    if topic.startswith("citysense/v1/"):
        if topic.endswith("/up"):
            return "v1", decode_v1
        if topic.endswith("/status"):
            return "status", decode_status
    if topic.startswith(("LASS/Test/PM25", "LASS/AirBox/")):
        return "lass", decode_lass
    if is_chirpstack_topic(topic, "up"):
        return "chirpstack", decode_chirpstack_up
    if is_chirpstack_topic(topic, "status") or is_chirpstack_topic(topic, "join"):
        return "chirpstack_status", decode_chirpstack_status
    raise DecodeError(f"no codec for topic {topic[:120]!r}")


def decode(topic: str, payload: bytes, received_at: float) -> Decoded:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    name, codec = codec_for(topic)
    decoded = codec(topic, payload, received_at)
    decoded.codec = name
    return decoded
