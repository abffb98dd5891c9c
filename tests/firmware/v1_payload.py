"""A strict checker for citysense payload v1 as the firmware sends it (ARCHITECTURE.md)."""

from __future__ import annotations

import json
import re
from typing import Any

METRICS = {"pm1", "pm25", "pm10", "t", "rh", "p", "co2", "occupied", "mag", "batt_mv", "rssi"}
EXTRA_METRICS = {"mag_base"}  # parking heartbeat: baseline magnitude (proposed for the registry)
ID_RE = re.compile(r"^[a-z0-9-]{3,64}$")


def _check_item(item: dict[str, Any], kind: str) -> None:
    assert isinstance(item["seq"], int) and item["seq"] >= 0
    assert isinstance(item["ts"], int) and item["ts"] >= 0
    m = item["m"]
    assert isinstance(m, dict) and m
    for key, value in m.items():
        assert key in METRICS | EXTRA_METRICS, f"unknown metric {key}"
        assert isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "parking":
        assert item["ev"] in ("change", "heartbeat", "boot")
        assert m["occupied"] in (0, 1)
    else:
        assert "ev" not in item


def check_v1(topic: str, payload: bytes) -> dict[str, Any]:
    """Validate one `.../up` message; return the decoded document."""
    parts = topic.split("/")
    assert parts[:2] == ["citysense", "v1"] and parts[4] == "up" and len(parts) == 5, topic
    kind, dev = parts[2], parts[3]
    assert kind in ("airbox", "parking") and ID_RE.match(dev)
    doc = json.loads(payload)
    assert doc["v"] == 1 and doc["id"] == dev
    if "batch" in doc:
        assert set(doc) == {"v", "id", "batch"}
        for item in doc["batch"]:
            assert set(item) <= {"seq", "ts", "m", "ev"}
            _check_item(item, kind)
    else:
        assert set(doc) <= {"v", "id", "seq", "ts", "m", "ev"}
        _check_item(doc, kind)
    return doc
