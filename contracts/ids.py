"""Device id rules, written once: the firmware, gateway, registration and API all check ids here."""

from __future__ import annotations

import re

from contracts.records import DecodeError

# \Z, not $: "$" also matches before a final newline, which would let "box-1\n" through.
V1_DEVICE_ID = re.compile(r"^[a-z0-9-]{3,64}\Z")
"""Ids of citysense hardware (air boxes, parking sensors): also their MQTT username and client id."""

ANY_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
"""Ids of LASS devices, kept exactly as their owners know them (`FT1_003`, `74DA38AF4812`)."""

KINDS = ("airbox", "parking")
"""Kinds of citysense hardware; LASS devices are kind `lass`, a namespace of their own."""

ALL_KINDS = (*KINDS, "lass")


def check_device_id(device_id: object, pattern: re.Pattern[str] = V1_DEVICE_ID) -> str:
    """The id itself, or DecodeError (a ValueError) with the reason a person needs."""
    if not isinstance(device_id, str):
        raise DecodeError(f"device id must be a string, got {type(device_id).__name__}")
    if not pattern.match(device_id):
        raise DecodeError(f"device id {device_id[:80]!r} does not match {pattern.pattern}")
    return device_id
