"""One evaluation cycle: read the data, judge every rule, write the transitions and their messages.

A cycle has two phases. The read phase (no lock) loads what the rules need and computes the
findings with the pure modules (alerts/conditions.py, alerts/neighbourhood.py,
alerts/school_air.py). The write phase, one transaction under alerts/store.py's evaluation
lock, reads the open alerts and the school flags *after* taking the lock and writes only the
differences: an alert opened for a new finding, resolved for a finding gone, a school's flag
moved, each with its outbox messages. State lives only in the database, so a restarted
evaluator, or a second one, continues from what is committed: no duplicate, no lost transition.
Delivery is another task reading the outbox (alerts/delivery.py): a slow webhook never delays a cycle.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts import store
from alerts.conditions import (
    DeviceInfo,
    Finding,
    PipelineStats,
    flag_rate_reasons,
    humidity_pinned_reasons,
    implausible_findings,
    pipeline_findings,
    relearning_bays,
    silent_devices,
    stuck_metrics,
)
from alerts.neighbourhood import NeighbourIndex, far_from_neighbours, hotspots
from alerts.rules import DeviceRules, RuleBook
from alerts.school_air import next_band, school_flag, school_hourly
from alerts.store import AnyConn
from calibration.aqi import AqiResult, get_scale, realtime_aqi
from contracts.topics import school_flag_topic

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
AQI_HOURS = 12
"""Hours read per cycle: the 12 of the real-time AQI rules (neighbour and hotspot windows are at most 12 too)."""
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def hour_start(moment: datetime) -> datetime:
    """The start of the UTC hour holding `moment` (the hours of store.load_hourly_pm25)."""
    return _EPOCH + HOUR * ((moment - _EPOCH) // HOUR)


@dataclass(frozen=True)
class SchoolVerdict:
    """A school's real-time AQI this cycle (None: too few valid hours) and the rules that apply to it."""

    school: str
    result: AqiResult | None
    scale: str
    threshold_band: int
    hysteresis_aqi: int
    email: tuple[str, ...]


@dataclass
class Judgement:
    """Everything the read phase found: findings, subjects to leave as they are, the schools' AQI."""

    now: datetime
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    keep: set[tuple[str, str]] = field(default_factory=set)
    schools: list[SchoolVerdict] = field(default_factory=list)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    school_emails: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def recipients(self, row: dict[str, Any], rules: RuleBook) -> tuple[str, ...]:
        """Who is mailed about an alert: its device's recipients, else its school's, else the fleet's."""
        device = self.devices.get(row["device_id"] or "")
        if device is not None:
            return rules.for_device(device.device_id, device.school, device.district).email
        if row["school"] in self.school_emails:
            return self.school_emails[row["school"]]
        return rules.file.email


@dataclass
class CycleResult:
    """What one cycle did."""

    seconds: float
    findings: int
    transitions: Counter[tuple[str, str]]
    messages: int
    flags_moved: int


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _replaces(finding: Finding | None, alert: store.OpenAlert) -> bool:
    """A school's band moved while at or above the threshold: the open alert ends and a new one opens
    (one alert per band crossing)."""
    return (
        finding is not None and finding.rule == "school_air" and finding.evidence["band"] != alert.evidence.get("band")
    )


class Evaluator:
    """Judges the rules of a RuleBook against one database; one instance per process."""

    def __init__(self, rules: RuleBook) -> None:
        self.rules = rules
        self.neighbours = NeighbourIndex()

    def _device_rules(self, device: DeviceInfo) -> DeviceRules:
        return self.rules.for_device(device.device_id, device.school, device.district)

    def _longest(self, section: str, key: str) -> float:
        base: float = getattr(getattr(self.rules.file, section), key)
        return max([base, *(float(getattr(o, section).get(key, 0)) for o in self.rules.file.overrides)])

    async def judge(self, conn: AnyConn) -> Judgement:
        """The read phase: every finding true now, by the database's clock."""
        book = self.rules.file
        now = await store.db_now(conn)
        judgement = Judgement(now)
        devices = await store.load_devices(conn)
        by_id = {d.device_id: d for d in devices}
        judgement.devices = by_id
        rules_of = self._device_rules

        silent = book.device_silent
        activity = await store.load_activity(conn, now - timedelta(seconds=silent.lookback_s))
        found = silent_devices(devices, activity, rules_of, now)
        runs = await store.load_stuck_runs(conn, now - timedelta(seconds=2 * self._longest("device_stuck", "for_s")))
        found += stuck_metrics(by_id, runs, rules_of)
        found += relearning_bays(by_id, await store.load_detector_statuses(conn), rules_of)

        imp = book.implausible
        first_hour = hour_start(now) - HOUR * (AQI_HOURS - 1)
        hourly = await store.load_hourly_pm25(conn, first_hour)
        current = int(hour_start(now).timestamp())
        hours_recent_first = [current - 3600 * i for i in range(AQI_HOURS)]
        reasons = {
            "flag_rate": flag_rate_reasons(
                by_id, await store.load_flag_counts(conn, now - timedelta(seconds=imp.window_s)), rules_of
            ),
            "humidity_pinned": humidity_pinned_reasons(
                by_id,
                await store.load_humidity_counts(conn, now - timedelta(seconds=imp.rh_window_s), imp.rh_pinned_at),
                rules_of,
            ),
            "neighbours": far_from_neighbours(
                devices,
                hourly,
                hours_recent_first[: imp.neighbour_hours][::-1],
                rules_of,
                self.neighbours,
            ),
        }
        found += implausible_findings(by_id, reasons)
        found += hotspots(
            devices,
            hourly,
            hours_recent_first[: book.hotspot.hours][::-1],
            rules_of,
            self.neighbours,
        )

        newest, dead, messages = await store.load_pipeline_counts(
            conn,
            now - timedelta(seconds=silent.lookback_s),
            now - timedelta(seconds=book.pipeline.dead_letter_window_s),
        )
        monitored = sum(1 for d in devices if d.device_id in activity)
        silent_count = sum(1 for f in found if f.rule == "device_silent")
        found += pipeline_findings(PipelineStats(newest, dead, messages, monitored, silent_count), book.pipeline, now)

        for finding in found:
            key = (finding.rule, finding.subject)
            judgement.findings[key] = finding
        for device in devices:
            if device.device_id not in activity:
                judgement.keep.add(("device_silent", device.device_id))  # still silent beyond the look-back

        members: dict[str, list[DeviceInfo]] = {}
        for device in devices:
            if device.school:
                members.setdefault(device.school, []).append(device)
        for school, boxes in sorted(members.items()):
            rules = self.rules.for_school(school, [b.district for b in boxes if b.district])
            air = rules.school_air
            if not air.enabled:
                continue
            series = school_hourly([hourly[b.device_id] for b in boxes if b.device_id in hourly], hours_recent_first)
            result = realtime_aqi(air.scale, series)
            judgement.school_emails[school] = rules.email
            judgement.schools.append(
                SchoolVerdict(school, result, air.scale, air.threshold_band, air.hysteresis_aqi, rules.email)
            )
            if result is None:
                judgement.keep.add(("school_air", school))
        return judgement

    async def run_cycle(self, conn: AnyConn) -> CycleResult:
        """Judge, then write the differences in one transaction (autocommit connection expected)."""
        started = time.perf_counter()
        judgement = await self.judge(conn)
        transitions: Counter[tuple[str, str]] = Counter()
        messages = flags_moved = 0
        async with conn.transaction():
            await store.lock_evaluation(conn)
            now = judgement.now
            open_now = await store.open_alerts(conn)
            flags = await store.load_school_flags(conn)
            findings = dict(judgement.findings)
            for verdict in judgement.schools:
                if verdict.result is None:
                    continue
                scale = get_scale(verdict.scale)
                previous = flags.get(verdict.school)
                prior_band = previous.band if previous is not None and previous.scale == scale.key else None
                band = next_band(scale, prior_band, verdict.result.aqi, verdict.hysteresis_aqi)
                flag = school_flag(verdict.school, scale, band, verdict.result)
                if flag != previous:
                    moved = previous is None or previous.colour != flag.colour
                    await store.save_school_flag(conn, flag, now, moved)
                    messages += await store.enqueue_many(
                        conn, [(None, "flag", "mqtt", school_flag_topic(verdict.school), {"school": verdict.school})]
                    )
                    flags_moved += moved
                if band >= verdict.threshold_band:
                    key = ("school_air", verdict.school)
                    findings[key] = Finding(
                        "school_air",
                        verdict.school,
                        {
                            "band": flag.category,
                            "colour": flag.colour,
                            "aqi": verdict.result.aqi,
                            "pm25_realtime": verdict.result.concentration,
                            "scale": scale.key,
                        },
                        school=verdict.school,
                    )
            ending = [
                (alert.id, findings[key].evidence if key in findings else {})
                for key, alert in open_now.items()
                if (key not in findings and key not in judgement.keep) or _replaces(findings.get(key), alert)
            ]
            outbox: list[tuple[int, str, str, str, dict[str, Any]]] = []
            for row in await store.resolve_alerts(conn, ending, now):
                transitions[(row["rule"], "resolved")] += 1
                outbox += self._messages(row, "resolved", judgement.recipients(row, self.rules))
            changed = [
                (alert.id, findings[key].evidence)
                for key, alert in open_now.items()
                if key in findings and key[0] == "hotspot" and findings[key].evidence != alert.evidence
            ]
            await store.update_evidence(conn, changed)
            starting = [
                finding for key, finding in findings.items() if key not in open_now or _replaces(finding, open_now[key])
            ]
            for row in await store.open_alerts_now(conn, starting, now, self.rules.version):
                transitions[(row["rule"], "opened")] += 1
                outbox += self._messages(row, "opened", judgement.recipients(row, self.rules))
            messages += await store.enqueue_many(conn, outbox)
        seconds = time.perf_counter() - started
        return CycleResult(seconds, len(judgement.findings), transitions, messages, flags_moved)

    def _messages(
        self, row: dict[str, Any], transition: str, emails: tuple[str, ...]
    ) -> list[tuple[int, str, str, str, dict[str, Any]]]:
        """The outbox rows of one transition: (alert id, transition, channel, target, payload)."""
        payload = {"transition": transition, "rules_version": self.rules.version, "alert": _jsonable(row)}
        hooks = self.rules.webhooks_for(row["rule"], row["school"])
        return [(int(row["id"]), transition, "webhook", url, payload) for url in hooks] + [
            (int(row["id"]), transition, "email", address, payload) for address in emails
        ]
