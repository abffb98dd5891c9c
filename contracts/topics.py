"""Topics, built and parsed here only: citysense/v1/{kind}/{device}/{up|status|config|receipt}, and
ChirpStack v4's MQTT integration application/{application_id}/device/{dev_eui}/event/{event}."""

from __future__ import annotations

from contracts.ids import KINDS, V1_DEVICE_ID, check_dev_eui, check_device_id
from contracts.records import DecodeError

LEAVES = ("up", "status", "config", "receipt")


def v1_topic(kind: str, device_id: str, leaf: str) -> str:
    """The topic of one device's `leaf` (`up` and `status` from the device; `config` and `receipt` to it)."""
    if kind not in KINDS or leaf not in LEAVES:
        raise ValueError(f"no citysense topic for kind {kind!r} and leaf {leaf!r}")
    return f"citysense/v1/{kind}/{device_id}/{leaf}"


_PARSED: dict[tuple[str, str], tuple[str, str]] = {}
_PARSED_MAX = 100_000  # one entry per valid topic seen; cleared when full


def split_v1_topic(topic: str, leaf: str) -> tuple[str, str]:
    """(kind, device_id) of a valid topic; valid topics are remembered, since a fleet
    repeats the same few thousand topics and the id pattern is checked once per topic."""
    key = (topic, leaf)
    found = _PARSED.get(key)
    if found is not None:
        return found
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "citysense" or parts[1] != "v1" or parts[4] != leaf:
        raise DecodeError(f"topic {topic[:120]!r} is not citysense/v1/{{kind}}/{{device}}/{leaf}")
    kind = parts[2]
    if kind not in KINDS:
        raise DecodeError(f"unknown device kind {kind[:40]!r} in topic (expected airbox or parking)")
    found = (kind, check_device_id(parts[3], V1_DEVICE_ID))
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = found
    return found


SCHOOL_FLAG_FORBIDDEN = frozenset("/+#\x00")
"""Characters a school name may not hold to be a topic level (a level separator, the wildcards, NUL)."""


def school_flag_topic(school: str) -> str:
    """The retained topic of a school's air-quality flag: citysense/v1/school/{school}/flag."""
    if not school or len(school.encode()) > 200 or SCHOOL_FLAG_FORBIDDEN.intersection(school):
        raise ValueError(f"school {school[:60]!r} cannot be a topic level (1-200 bytes, no '/', '+', '#' or NUL)")
    return f"citysense/v1/school/{school}/flag"


CHIRPSTACK_UP_TOPIC = "application/+/device/+/event/up"
"""ChirpStack v4 publishes each deduplicated uplink of a LoRaWAN device here (JSON marshaler)."""
CHIRPSTACK_STATUS_TOPICS = ("application/+/device/+/event/status", "application/+/device/+/event/join")
"""... a device's answer to a status request (battery, link margin), and each (re)join of the network."""
_CHIRPSTACK_APPLICATION_ID = 120  # a UUID is 36 characters; anything much longer is not ChirpStack's


def is_chirpstack_topic(topic: str, event: str) -> bool:
    """True for application/{id}/device/{eui}/event/`event` (the shape only; split_chirpstack_topic checks it)."""
    return topic.startswith("application/") and topic.endswith(f"/event/{event}")


def split_chirpstack_topic(topic: str, event: str) -> tuple[str, str]:
    """(application_id, dev_eui) of application/{application_id}/device/{dev_eui}/event/`event`, or DecodeError.

    The EUI comes back in ChirpStack's spelling (16 lower-case hex digits, contracts.ids.check_dev_eui)."""
    parts = topic.split("/")
    if (len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event"
            or parts[5] != event or not parts[1] or len(parts[1]) > _CHIRPSTACK_APPLICATION_ID):
        shape = f"application/{{application_id}}/device/{{dev_eui}}/event/{event}"
        raise DecodeError(f"topic {topic[:120]!r} is not {shape}")
    return parts[1], check_dev_eui(parts[3])
