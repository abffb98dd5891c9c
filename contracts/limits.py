"""Bounds on what comes in from outside, in one place so every stage refuses the same sizes."""

from __future__ import annotations

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest MQTT payload the gateway decodes; larger ones are dead-lettered with their size."""
