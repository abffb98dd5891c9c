"""Prometheus metrics of the gateway, served on /metrics by prometheus-client."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_DIGITS = re.compile(r"\d+")

MESSAGES_RECEIVED = Counter(
    "citysense_gateway_messages_received", "MQTT messages taken off the broker (accepted, rejected or not yet either)",
    registry=REGISTRY,
)
MESSAGES_ACCEPTED = Counter(
    "citysense_gateway_messages_accepted", "Messages decoded and committed", ["codec"], registry=REGISTRY
)
MESSAGES_REJECTED = Counter(
    "citysense_gateway_messages_rejected", "Messages dead-lettered, by kind of reason (ids and numbers left out)",
    ["reason"], registry=REGISTRY,
)


MAX_REASON_LABELS = 64
"""Distinct `reason` label values one gateway process reports; any further kind counts as 'other'."""


class BoundedLabels:
    """Label values for free text, bounded twice: quoted values (ids, names) and numbers are replaced
    and only the text before the first ':' is kept, and past `limit` distinct values every new one
    is 'other', so no sender, however inventive its payloads, grows a metric without bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def label(self, text: str) -> str:
        value = _DIGITS.sub("N", _QUOTED.sub("…", text)).split(":", maxsplit=1)[0][:60]
        if value not in self.seen:
            if len(self.seen) >= self.limit:
                return "other"
            self.seen.add(value)
        return value


_REASONS = BoundedLabels(MAX_REASON_LABELS)


def reason_label(reason: str) -> str:
    """The `reason` label of a dead letter (see BoundedLabels)."""
    return _REASONS.label(reason)
MESSAGES_ACKED = Counter("citysense_gateway_messages_acked", "PUBACKs sent after commit", registry=REGISTRY)
ROWS_WRITTEN = Counter(
    "citysense_gateway_rows_written", "Rows inserted (new, not duplicates)", ["table"], registry=REGISTRY
)
DUPLICATES = Counter("citysense_gateway_duplicate_rows", "Rows already stored (redelivery)", registry=REGISTRY)
BATCH_SIZE = Histogram(
    "citysense_gateway_batch_messages", "Messages per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000), registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "citysense_gateway_commit_seconds", "Time to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY,
)
LAG_SECONDS = Histogram(
    "citysense_gateway_receive_to_commit_seconds", "From MQTT receive to commit, per batch (oldest message)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("citysense_gateway_queue_depth", "Messages received but not yet committed", registry=REGISTRY)
DB_ERRORS = Counter("citysense_gateway_database_errors", "Failed batch writes (retried)", ["kind"], registry=REGISTRY)
DB_UP = Gauge("citysense_gateway_database_up", "1 when the last write succeeded", registry=REGISTRY)
RECEIPTS_SENT = Counter(
    "citysense_gateway_receipts_sent", "Commit receipts published to devices (coalesced)", registry=REGISTRY
)
MQTT_CONNECTED = Gauge("citysense_gateway_mqtt_connected", "1 while the MQTT session is up", registry=REGISTRY)
