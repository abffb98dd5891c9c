"""Publish a device's retained config message (`citysense/v1/{kind}/{id}/config`).

The device applies keys it knows (interval, thresholds...) when the `version` is newer
than the one it runs, and reports the applied version in its status message.
"""

from __future__ import annotations

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contracts.ids import V1_DEVICE_ID
from contracts.topics import v1_topic
from contracts.urls import parse_mqtt_url

REMOTE_KEYS = {
    "interval_s": int, "settle_s": int, "frames": int, "status_every_s": int, "sample_ms": int,
    "th_high_ut": float, "th_low_ut": float, "debounce": int, "learn_samples": int, "baseline_alpha": float,
    "heartbeat_every_s": int, "mqtt_keepalive": int,
}


def parse_assignments(pairs: list[str]) -> dict[str, int | float]:
    """`interval_s=60` style pairs -> typed values, refusing keys a device would refuse."""
    out: dict[str, int | float] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r} is not key=value")
        kind = REMOTE_KEYS.get(key)
        if kind is None:
            raise ValueError(f"{key!r} cannot be set remotely; allowed: {', '.join(sorted(REMOTE_KEYS))}")
        try:
            out[key] = kind(text)
        except ValueError:
            raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    return out


def publish_config(broker_url: str, kind: str, device_id: str, version: int, values: dict[str, int | float]) -> str:
    if kind not in ("airbox", "parking"):
        raise ValueError(f"kind must be airbox or parking, got {kind!r}")
    if not V1_DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} must match [a-z0-9-]{{3,64}}")
    if version < 1:
        raise ValueError("version must be >= 1")
    topic = v1_topic(kind, device_id, "config")
    endpoint = parse_mqtt_url(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"citysense-config-{device_id}")
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    client.connect(endpoint.host, endpoint.port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, orjson.dumps({"version": version, **values}), qos=1, retain=True)
        info.wait_for_publish(10)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge the config on {topic}")
    finally:
        client.loop_stop()
        client.disconnect()
    return topic
