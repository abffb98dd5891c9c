"""The conditions of the device and pipeline rules: pure functions from what the database holds to findings.

Each function takes plain snapshots (alerts/store.py reads them) and the resolved rules, and
returns the findings true *now*: the evaluator opens an alert for a finding with no open
alert and resolves an open alert whose finding is gone. No clock is read here: `now` is an
argument, so a test replays any history.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.rules import DeviceRules, PipelineRule
from contracts.flags import Flag


@dataclass(frozen=True)
class Finding:
    """A condition that holds: the rule, what it is about, and the evidence a person needs to act."""

    rule: str
    subject: str
    evidence: dict[str, Any]
    school: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class DeviceInfo:
    """A device as registered."""

    device_id: str
    kind: str
    school: str | None
    district: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class Activity:
    """When a device was last heard of and its latest distinct reading times, newest first."""

    device_id: str
    last_seen: datetime
    recent_times: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class StuckRun:
    """One metric of one device: its newest reading time, the newest without STUCK, the oldest with it."""

    device_id: str
    metric: str
    last: datetime
    last_ok: datetime | None
    first_stuck: datetime | None


@dataclass(frozen=True)
class FlagCounts:
    """Readings of a device in the implausible window, and how many carry SPIKE or OUT_OF_RANGE."""

    device_id: str
    readings: int
    flagged: int


@dataclass(frozen=True)
class HumidityCounts:
    """RH readings of a device in the RH window, and how many are at or above the pinned level."""

    device_id: str
    readings: int
    pinned: int


IMPLAUSIBLE_FLAGS = int(Flag.SPIKE | Flag.OUT_OF_RANGE)
STUCK_FLAG = int(Flag.STUCK)

RulesOf = Callable[[DeviceInfo], DeviceRules]


def observed_interval_s(recent_times: Sequence[datetime]) -> float | None:
    """The median gap between a device's latest distinct reading times (None under three times)."""
    if len(recent_times) < 3:
        return None
    ordered = sorted(recent_times)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ordered)]
    gaps = [g for g in gaps if g > 0]
    return statistics.median(gaps) if gaps else None


def silent_devices(
    devices: Iterable[DeviceInfo], activity: dict[str, Activity], rules_of: RulesOf, now: datetime
) -> list[Finding]:
    """Devices with no reading for k x their interval: the configured one, else the observed cadence,
    else the rule's default. Devices never heard of within the look-back are not judged."""
    out = []
    for device in devices:
        rules = rules_of(device).silent
        seen = activity.get(device.device_id)
        if not rules.enabled or seen is None:
            continue
        observed = observed_interval_s(seen.recent_times)
        interval = rules.interval_s or observed or rules.default_interval_s
        source = "configured" if rules.interval_s else "observed" if observed else "default"
        quiet = (now - seen.last_seen).total_seconds()
        if quiet > rules.k * interval:
            out.append(
                Finding(
                    "device_silent",
                    device.device_id,
                    {
                        "last_seen": seen.last_seen.isoformat(),
                        "interval_s": round(interval, 3),
                        "interval_source": source,
                        "k": rules.k,
                    },
                    school=device.school,
                    device_id=device.device_id,
                )
            )
    return out


def stuck_metrics(devices: dict[str, DeviceInfo], runs: Iterable[StuckRun], rules_of: RulesOf) -> list[Finding]:
    """A metric whose newest reading is STUCK and whose STUCK run has lasted `for_s` (measured between
    readings, so a box that stopped sending is silent, not stuck)."""
    out = []
    for run in runs:
        device = devices.get(run.device_id)
        if device is None:
            continue
        rules = rules_of(device).stuck
        if not rules.enabled or run.first_stuck is None or (run.last_ok is not None and run.last_ok >= run.last):
            continue
        since = run.last_ok if run.last_ok is not None and run.last_ok > run.first_stuck else run.first_stuck
        lasted = (run.last - since).total_seconds()
        if lasted >= rules.for_s:
            out.append(
                Finding(
                    "device_stuck",
                    f"{run.device_id}:{run.metric}",
                    {
                        "metric": run.metric,
                        "stuck_since": since.isoformat(),
                        "stuck_s": round(lasted),
                        "for_s": rules.for_s,
                    },
                    school=device.school,
                    device_id=device.device_id,
                )
            )
    return out


@dataclass(frozen=True)
class DetectorStatus:
    """A parking sensor's newest status, as its detector reports itself (migration 0015's columns)."""

    device_id: str
    needs_relearning: bool
    baseline_age_s: int | None
    confidence: float | None
    status_at: datetime


def relearning_bays(
    devices: dict[str, DeviceInfo], statuses: Iterable[DetectorStatus], rules_of: RulesOf
) -> list[Finding]:
    """A parking sensor whose newest status says its baseline needs confirming or re-learning: its
    occupancy may be inverted or stuck until a car has come and gone (firmware/parking/detector.py)."""
    out = []
    for status in statuses:
        device = devices.get(status.device_id)
        if device is None or device.kind != "parking" or not status.needs_relearning:
            continue
        if not rules_of(device).relearn.enabled:
            continue
        evidence = {"baseline_age_s": status.baseline_age_s, "confidence": status.confidence,
                    "status_at": status.status_at.isoformat()}
        out.append(Finding("parking_relearn", device.device_id, evidence, school=device.school,
                           device_id=device.device_id))
    return out


def flag_rate_reasons(
    devices: dict[str, DeviceInfo], counts: Iterable[FlagCounts], rules_of: RulesOf
) -> dict[str, dict[str, Any]]:
    """device -> evidence, for devices whose SPIKE/OUT_OF_RANGE share is above the rule's `flag_rate`."""
    out = {}
    for item in counts:
        device = devices.get(item.device_id)
        if device is None:
            continue
        rules = rules_of(device).implausible
        if rules.enabled and item.readings >= rules.min_readings and item.flagged > rules.flag_rate * item.readings:
            out[item.device_id] = {
                "flagged": item.flagged,
                "readings": item.readings,
                "share": round(item.flagged / item.readings, 3),
                "threshold": rules.flag_rate,
            }
    return out


def humidity_pinned_reasons(
    devices: dict[str, DeviceInfo], counts: Iterable[HumidityCounts], rules_of: RulesOf
) -> dict[str, dict[str, Any]]:
    """device -> evidence, for devices whose RH sits at 100 % (a wet or dead humidity sensor)."""
    out = {}
    for item in counts:
        device = devices.get(item.device_id)
        if device is None:
            continue
        rules = rules_of(device).implausible
        if (
            rules.enabled
            and item.readings >= rules.min_readings
            and item.pinned >= rules.rh_pinned_share * item.readings
        ):
            out[item.device_id] = {"pinned": item.pinned, "readings": item.readings, "at_or_above": rules.rh_pinned_at}
    return out


def implausible_findings(
    devices: dict[str, DeviceInfo], reasons: dict[str, dict[str, dict[str, Any]]]
) -> list[Finding]:
    """One `implausible` finding per device, its evidence keyed by reason (flag_rate, humidity_pinned,
    neighbours): one alert a person reads, not three that flap independently."""
    out = []
    by_device: dict[str, dict[str, Any]] = {}
    for reason, found in reasons.items():
        for device_id, evidence in found.items():
            by_device.setdefault(device_id, {})[reason] = evidence
    for device_id, evidence in sorted(by_device.items()):
        device = devices[device_id]
        out.append(Finding("implausible", device_id, {"reasons": evidence}, school=device.school, device_id=device_id))
    return out


@dataclass(frozen=True)
class PipelineStats:
    """Fleet-wide figures for the pipeline rule."""

    newest_reading: datetime | None
    dead_letters: int
    messages: int
    monitored_devices: int
    silent_devices: int


def pipeline_findings(stats: PipelineStats, rule: PipelineRule, now: datetime) -> list[Finding]:
    """Ingest lag (the newest stored reading is old), dead-letter ratio, share of devices silent."""
    if not rule.enabled:
        return []
    out = []
    if stats.newest_reading is not None:
        lag = (now - stats.newest_reading).total_seconds()
        if lag > rule.ingest_lag_s:
            out.append(
                Finding(
                    "pipeline",
                    "ingest_lag",
                    {
                        "lag_s": round(lag, 1),
                        "threshold_s": rule.ingest_lag_s,
                        "newest_reading": stats.newest_reading.isoformat(),
                    },
                )
            )
    total = stats.dead_letters + stats.messages
    if stats.dead_letters >= rule.dead_letter_min and total and stats.dead_letters > rule.dead_letter_ratio * total:
        out.append(
            Finding(
                "pipeline",
                "dead_letter_ratio",
                {
                    "dead_letters": stats.dead_letters,
                    "messages": stats.messages,
                    "ratio": round(stats.dead_letters / total, 4),
                    "threshold": rule.dead_letter_ratio,
                    "window_s": rule.dead_letter_window_s,
                },
            )
        )
    if stats.monitored_devices >= rule.silent_min_devices and (
        stats.silent_devices > rule.silent_share * stats.monitored_devices
    ):
        out.append(
            Finding(
                "pipeline",
                "devices_silent",
                {
                    "silent": stats.silent_devices,
                    "monitored": stats.monitored_devices,
                    "share": round(stats.silent_devices / stats.monitored_devices, 3),
                    "threshold": rule.silent_share,
                },
            )
        )
    return out
