"""Device id rules, written once: the firmware, gateway, registration and API all check ids here."""

from __future__ import annotations

import re

from contracts.records import DecodeError

V1_DEVICE_ID_CHARS = "[a-z0-9-]{3,64}"
"""Ids of citysense hardware (air boxes, parking sensors): also their MQTT username and client id."""
ANY_DEVICE_ID_CHARS = "[A-Za-z0-9_.-]{1,64}"
"""Any stored id: citysense hardware and LASS devices, kept as their owners know them (`FT1_003`)."""

# \Z, not $: in Python "$" also matches before a final newline, which would let "box-1\n" through
V1_DEVICE_ID = re.compile(rf"^{V1_DEVICE_ID_CHARS}\Z")
ANY_DEVICE_ID = re.compile(rf"^{ANY_DEVICE_ID_CHARS}\Z")
# the same rules for pydantic / OpenAPI, whose (Rust, ECMA) regexes match "$" only at the very end
V1_DEVICE_ID_SCHEMA = f"^{V1_DEVICE_ID_CHARS}$"
ANY_DEVICE_ID_SCHEMA = f"^{ANY_DEVICE_ID_CHARS}$"

RESERVED_ID_PREFIX = "citysense-"
"""Every broker account that is not a device (gateway replicas, operators such as the simulator)
is named with this prefix, and no device id may start with it: a device's username, which the
broker also makes its client id, can then never be a gateway's or an operator's."""

KINDS = ("airbox", "parking")
"""Kinds of citysense hardware; LASS devices are kind `lass`, a namespace of their own."""

ALL_KINDS = (*KINDS, "lass")


def namespace_conflict(device_id: str, message_kind: str, stored_kind: str | None) -> str | None:
    """Why a message of `message_kind` may not be stored under a device of `stored_kind`, or None.

    Each device speaks in one namespace: a LASS line never writes into citysense hardware (nor a
    citysense topic into a LASS device), and an air box never publishes as a parking sensor.
    A device not stored yet (`stored_kind` None) conflicts with nothing.
    """
    if stored_kind is None or stored_kind == message_kind:
        return None
    if message_kind == "lass":
        return (f"LASS id {device_id[:80]!r} names a citysense {stored_kind}; LASS devices live in their "
                "own namespace (a city registers them as kind lass)")
    if stored_kind == "lass":
        return f"device {device_id!r} is a LASS device; citysense/v1 topics are for citysense hardware"
    return f"device {device_id!r} is registered as {stored_kind}, not {message_kind}"


def reserved_id_reason(device_id: str) -> str | None:
    """Why `device_id` may not name a device (it is in the broker accounts' namespace), or None."""
    if device_id.startswith(RESERVED_ID_PREFIX):
        return (f"device id {device_id[:80]!r} starts with {RESERVED_ID_PREFIX!r}, which is reserved for "
                "gateway and operator broker accounts")
    return None


def check_account_name(name: str) -> str:
    """A gateway's or operator's broker account name (also its client id), or ValueError.

    It must be a valid v1 id (the same characters Mosquitto and the ACL see for devices) and
    start with the reserved prefix, so that no registered device can ever hold it."""
    if not V1_DEVICE_ID.match(name) or not name.startswith(RESERVED_ID_PREFIX):
        raise ValueError(f"broker account {name[:80]!r} must match {V1_DEVICE_ID_CHARS} and start with "
                         f"{RESERVED_ID_PREFIX!r} (device ids never do)")
    return name


def check_device_id(device_id: object, pattern: re.Pattern[str] = V1_DEVICE_ID) -> str:
    """The id itself, or DecodeError (a ValueError) with the reason a person needs.

    Ids in the reserved account namespace are refused whatever the pattern (LASS ids too)."""
    if not isinstance(device_id, str):
        raise DecodeError(f"device id must be a string, got {type(device_id).__name__}")
    if not pattern.match(device_id):
        raise DecodeError(f"device id {device_id[:80]!r} does not match {pattern.pattern}")
    reserved = reserved_id_reason(device_id)
    if reserved is not None:
        raise DecodeError(reserved)
    return device_id


DEV_EUI_CHARS = "[0-9a-f]{16}"
"""A LoRaWAN device's EUI-64 as ChirpStack v4 writes it (`deviceInfo.devEui`, the topic): 16 lower-case hex digits."""
DEV_EUI = re.compile(rf"^{DEV_EUI_CHARS}\Z")


def check_dev_eui(dev_eui: object) -> str:
    """The EUI in ChirpStack's spelling (lower case, no separators), or DecodeError (a ValueError).

    Operators copy EUIs from labels and consoles as `70B3D5...` or `70-b3-d5-...`; both are
    the same device, so upper case and `-`/`:` separators are accepted and normalised here."""
    if not isinstance(dev_eui, str):
        raise DecodeError(f"devEui must be a string, got {type(dev_eui).__name__}")
    normal = dev_eui.strip().lower().replace("-", "").replace(":", "")
    if not DEV_EUI.match(normal):
        raise DecodeError(f"devEui {dev_eui[:40]!r} is not 16 hexadecimal digits")
    return normal
