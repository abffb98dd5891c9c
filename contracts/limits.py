"""Bounds on what comes in from outside, in one place so every stage refuses the same sizes."""

from __future__ import annotations

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest MQTT payload the gateway decodes; larger ones are dead-lettered with their size."""

DEAD_LETTER_PAYLOAD_BYTES = 4096
"""A dead letter keeps this much of its payload (with the full size and a digest of all of it)."""

DEAD_LETTER_TOPIC_CHARS = 1000
"""... and this much of its topic."""

MAX_READING_AGE_S = 14 * 86400.0
"""Oldest device time the gateway trusts (a device queue holds about a day; two weeks is a broken
clock): older readings get the receive time and CLOCK_SKEW. The aggregates' refresh window and
the compression delay are derived from it, so every reading the gateway accepts is aggregated."""

AGGREGATE_REFRESH_DAYS = 16
"""How far back aggregates are refreshed and before which raw chunks may be compressed: the
accepted lateness (14 days) plus two days of margin for a replay that arrives late itself.
ingest/migrations/0005_late_data_windows.timescale.sql states the same number (tested)."""
