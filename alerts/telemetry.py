"""The evaluator's Prometheus metrics, on a registry of its own (CITYSENSE_ALERTS_METRICS_PORT).

The names are a contract: deploy/prometheus/rules/ alerts on them (evaluator down or stalled,
deliveries failing), so they change only with those rules.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

OPEN = Gauge("citysense_alerts_open", "Alerts open or acknowledged, by rule", ["rule"], registry=REGISTRY)
TRANSITIONS = Counter(
    "citysense_alerts_transitions",
    "Alert transitions written by this evaluator (to: opened, resolved)",
    ["rule", "to"],
    registry=REGISTRY,
)
EVALUATION_SECONDS = Histogram(
    "citysense_alerts_evaluation_seconds",
    "Duration of one evaluation cycle",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAST_EVALUATION = Gauge(
    "citysense_alerts_last_evaluation_timestamp_seconds", "Unix time the last cycle finished", registry=REGISTRY
)
DELIVERY_FAILURES = Counter(
    "citysense_alerts_delivery_failures",
    "Failed delivery attempts (webhook, email, mqtt)",
    ["channel"],
    registry=REGISTRY,
)

for _channel in ("webhook", "email", "mqtt"):
    DELIVERY_FAILURES.labels(_channel)  # every series exists from the start, so rate() sees the first failure
