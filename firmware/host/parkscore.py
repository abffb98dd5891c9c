"""Score the parking detector on street traces: events, false changes, flapping, occupied time, per family.

CPython only. Runs the detector the way `parking/app.py` does (one update per
good sample, `skip()` for a failed read, a new detector at every boot that
restores the snapshot the app would have saved: at boot, at every change,
when the detector re-decides the empty bay (`save_due`) and at every
heartbeat) and compares what it reports with the trace's truth.

Definitions (stated once, used by the tests and the table):
- a true event (arrival or departure of the bay's own vehicle) is detected
  when a reported change to the same state falls in [event - EARLY_S,
  event + LATE_S]; each report matches at most one event (greedy, in time
  order). A boot whose decided state differs from the last reported one is a
  report too (the app publishes it in its `boot` message). An event while the
  device is unpowered cannot be seen before it powers up again: its window
  ends after LATE_S powered seconds (`deadline`), so LATE_S after that power-up.
- recall = matched / true events; precision = matched / reports.
- false changes per day = unmatched reports / trace-days.
- flapping = an unmatched report followed by the opposite report within FLAP_S.
- occupied-time accuracy = share of powered seconds outside the event windows
  where the reported state equals the truth (while learning, the last reported state counts).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the firmware's parking package

import streettraces
from parking.detector import LEARNING, Detector, make_detector

EARLY_S = 30
LATE_S = 120
FLAP_S = 120
HEARTBEAT_S = 1800


@dataclass
class Score:
    family: str
    traces: int = 0
    days: float = 0.0
    events: int = 0
    reports: int = 0
    matched: int = 0
    flaps: int = 0
    agree_s: int = 0
    judged_s: int = 0

    def add(self, other: Score) -> None:
        self.traces += other.traces
        self.days += other.days
        self.events += other.events
        self.reports += other.reports
        self.matched += other.matched
        self.flaps += other.flaps
        self.agree_s += other.agree_s
        self.judged_s += other.judged_s

    @property
    def recall(self) -> float:
        return 100.0 * self.matched / self.events if self.events else 100.0

    @property
    def precision(self) -> float:
        return 100.0 * self.matched / self.reports if self.reports else 100.0

    @property
    def false_per_day(self) -> float:
        return (self.reports - self.matched) / self.days if self.days else 0.0

    @property
    def occupied_accuracy(self) -> float:
        return 100.0 * self.agree_s / self.judged_s if self.judged_s else 100.0


def run_trace(tr: streettraces.Trace, factory: Callable[[], Detector]) -> tuple[list[tuple[int, int]], bytearray]:
    """Reports (sample index, occupied) and the reported state per second."""
    det = factory()
    saved: list[float] | None = None
    reported = -1  # nothing reported before the first boot
    reports: list[tuple[int, int]] = []
    state = bytearray(tr.n)
    for i in range(tr.n):
        if not tr.powered[i]:
            state[i] = max(reported, 0)
            continue
        if i in tr.boots:
            det = factory()
            if tr.boots[i] and saved is not None:
                det.restore(saved)
            else:
                saved = None
        if tr.ok[i]:
            learning = det.state == LEARNING
            changed = det.update(tr.x[i], tr.y[i], tr.z[i], tr.temp[i])
            if changed or det.save_due:
                saved = det.snapshot()
                det.save_due = False
            if changed:
                if not learning or reported not in (-1, det.occupied):
                    reports.append((i, det.occupied))
                reported = det.occupied
        else:
            det.skip()
        if i % HEARTBEAT_S == 0 and det.state != LEARNING:
            saved = det.snapshot()
        state[i] = max(reported, 0)
    return reports, state


def deadline(tr: streettraces.Trace, t: int) -> int:
    """The last sample at which a report still matches the event at `t`: LATE_S powered samples after
    it (an event during a power cut, or just before one, is given its whole window once the device is
    back)."""
    i, seen = t, 0
    while i < tr.n and seen < LATE_S:
        seen += tr.powered[i]
        i += 1
    return i + (LATE_S - seen)


def match(tr: streettraces.Trace, reports: list[tuple[int, int]]) -> tuple[list[bool], list[tuple[int, int]]]:
    """Which reports match a true event (greedy, in time order), and the true events left unmatched."""
    used = [False] * len(reports)
    missed: list[tuple[int, int]] = []
    j0 = 0
    for t, s in tr.events():
        while j0 < len(reports) and reports[j0][0] < t - EARLY_S:
            j0 += 1
        last = deadline(tr, t)
        for j in range(j0, len(reports)):
            idx, st = reports[j]
            if idx > last:
                missed.append((t, s))
                break
            if not used[j] and st == s:
                used[j] = True
                break
        else:
            missed.append((t, s))
    return used, missed


def score_trace(tr: streettraces.Trace, factory: Callable[[], Detector]) -> Score:
    return score_reports(tr, *run_trace(tr, factory))


def score_reports(tr: streettraces.Trace, reports: list[tuple[int, int]], state: bytearray) -> Score:
    truth = tr.events()
    used, missed = match(tr, reports)
    flaps = 0
    for j in range(len(reports) - 1):
        if not used[j] and reports[j + 1][0] - reports[j][0] <= FLAP_S and reports[j + 1][1] != reports[j][1]:
            flaps += 1
    window = bytearray(tr.n)
    for t, _ in truth:
        a, b = max(0, t - EARLY_S), min(tr.n, deadline(tr, t))
        window[a:b] = b"\x01" * (b - a)
    agree = judged = 0
    for i in range(tr.n):
        if tr.powered[i] and not window[i]:
            judged += 1
            if state[i] == tr.truth[i]:
                agree += 1
    matched = len(truth) - len(missed)
    return Score(tr.family, 1, tr.n / streettraces.DAY_S, len(truth), len(reports), matched, flaps, agree, judged)


def score_set(traces: list[streettraces.Trace], factory: Callable[[], Detector]) -> dict[str, Score]:
    out: dict[str, Score] = {}
    for tr in traces:
        out.setdefault(tr.family, Score(tr.family)).add(score_trace(tr, factory))
    return out


def default_detector() -> Detector:
    return make_detector(1000)


def table(scores: dict[str, Score]) -> str:
    lines = [
        "| family | traces | days | events | recall % | precision % | false/day | flaps | occupied-time % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = Score("all")
    for s in scores.values():
        total.add(s)
    for s in [*scores.values(), total]:
        lines.append(
            f"| {s.family} | {s.traces} | {s.days:.1f} | {s.events} | {s.recall:.2f} | {s.precision:.2f} "
            f"| {s.false_per_day:.2f} | {s.flaps} | {s.occupied_accuracy:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1000, help="first seed of the set")
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--misses", action="store_true", help="list each trace's missed events and false reports")
    ap.add_argument("--variant", default="", metavar="NAME=VALUE,...",
                    help="score on a variant of the generator (streettraces.Variant), e.g. moment=0.6,offset_ut=10")
    args = ap.parse_args()
    try:
        variant = streettraces.Variant.parse(args.variant)
    except ValueError as exc:
        ap.error(f"--variant: {exc}")
    t0 = time.monotonic()
    scores: dict[str, Score] = {}
    for tr in streettraces.seed_set(args.seed, args.per_family, variant):
        reports, state = run_trace(tr, default_detector)
        s = score_reports(tr, reports, state)
        scores.setdefault(tr.family, Score(tr.family)).add(s)
        if args.misses:
            used, missed = match(tr, reports)
            false = [r for r, u in zip(reports, used, strict=True) if not u]
            if missed or false:
                print(f"{tr.family} seed {tr.seed}: missed (s, state) {missed}; false reports {false}")
    print(table(scores))
    print(f"({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
