"""The one calibration engine: which model applies to a reading, and the value it gives.

The gateway runs it on live batches (`gateway/calibration_step.py`) and `citysense
calibrate apply` on stored rows (`ingest/calibration_store.py` `recalibrate`), so a reading
gets the same `value` and `calibration_id` whichever path computes it. The rules:

1. **Which model.** A version covers ``valid_from <= t < valid_to`` (from inclusive, to
   exclusive; a missing end is unbounded), where t is the reading's own time, never the
   time of the computation. The device's own versions beat its sensor type's defaults;
   among versions of the same level covering t the newest ``valid_from`` wins, then the
   highest id (a fit stored later supersedes without deleting history). No version:
   value = raw, no calibration id.
2. **No value.** A reading flagged SENTINEL, OUT_OF_RANGE or UNKNOWN_METRIC
   (`contracts.flags.NO_VALUE`), or whose metric is not in the registry, gets value NULL
   and no calibration id; `raw` keeps what was sent.
3. **Clipping.** A model's output is clipped at 0 only where the metric cannot be
   negative (`MetricSpec.can_be_negative` in `contracts.metrics`): PM yes, °C no.
4. **Humidity.** Models that need RH take the raw rh of the same device and time (see
   `humidity_input`); an rh reading that has no value itself counts as missing, and then
   the model gives NULL (with its calibration id, which says why).

Times are float Unix seconds, as the gateway's rows carry them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.models import Model
from contracts.flags import NO_VALUE
from contracts.metrics import METRICS
from contracts.records import ReadingRow

# one device's reading: (time in Unix seconds, metric, raw, flags, rh of the same time or NaN)
EngineRow = tuple[float, str, float, int, float]
# (value or None, calibration id or None)
Calibrated = tuple[float | None, int | None]
# (calibration id, model)
Choice = tuple[int, Model]

_NO_VALUE = int(NO_VALUE)
_DEVICE_LEVEL, _TYPE_LEVEL = 1, 0  # higher wins
_VARIES: Any = object()  # not in ModelHistory.fixed: ask `choose`


@dataclass(frozen=True)
class ModelVersion:
    """One stored calibration, as the engine needs it: valid over [valid_from, valid_to)."""

    id: int
    metric: str
    model: Model
    valid_from: float = -math.inf  # Unix seconds; -inf when unbounded
    valid_to: float = math.inf  # Unix seconds; +inf when unbounded


def humidity_input(raw: float | None, flags: int) -> float:
    """The RH an RH-dependent model takes from an rh reading: its raw value, or NaN when it
    has none (missing, or flagged as having no value, e.g. a sentinel or RH above 100 %)."""
    if raw is None or flags & _NO_VALUE:
        return math.nan
    return raw


def humidity_column(raws: npt.NDArray[np.float64], flags: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """`humidity_input` of each rh reading of a column."""
    return np.where((flags & _NO_VALUE) != 0, np.nan, raws)


class ModelHistory:
    """The versions that can apply to one device: its own and its sensor type's defaults.

    `choose` is on the hot path; the time line of each metric is built once, on first use.
    """

    __slots__ = ("_ranked", "_timelines", "fixed")

    def __init__(self, device_models: Iterable[ModelVersion], type_defaults: Iterable[ModelVersion] = ()) -> None:
        self._ranked: dict[str, list[tuple[int, ModelVersion]]] = {}
        for level, versions in ((_DEVICE_LEVEL, device_models), (_TYPE_LEVEL, type_defaults)):
            for version in versions:
                self._ranked.setdefault(version.metric, []).append((level, version))
        self._timelines: dict[str, tuple[list[float], list[Choice | None]]] = {}
        # metrics whose choice does not depend on time (one interval), filled by `choose`:
        # the engine's hot loop reads it before calling `choose`
        self.fixed: dict[str, Choice | None] = {}

    def _timeline(self, metric: str) -> tuple[list[float], list[Choice | None]]:
        """Interval starts (the first is -inf) and the choice over each interval."""
        candidates = self._ranked.get(metric, [])
        edges = {v.valid_from for _, v in candidates} | {v.valid_to for _, v in candidates}
        starts = [-math.inf, *sorted(e for e in edges if math.isfinite(e))]
        out_starts: list[float] = []
        choices: list[Choice | None] = []
        for start in starts:
            # boundaries include every edge, so a version covering `start` covers its interval
            covering = [(lv, v.valid_from, v.id, v) for lv, v in candidates if v.valid_from <= start < v.valid_to]
            best = max(covering, key=lambda c: c[:3])[3] if covering else None
            choice = None if best is None else (best.id, best.model)
            if not choices or choices[-1] != choice:
                out_starts.append(start)
                choices.append(choice)
        return out_starts, choices

    def timeline(self, metric: str) -> tuple[list[float], list[Choice | None]]:
        """Interval starts (the first is -inf) and the choice over each: `choose` for a whole column."""
        timeline = self._timelines.get(metric)
        if timeline is None:
            timeline = self._timelines[metric] = self._timeline(metric)
            if len(timeline[1]) == 1:
                self.fixed[metric] = timeline[1][0]
        return timeline

    def choose(self, metric: str, at: float) -> Choice | None:
        """The (calibration id, model) applying to `metric` at `at`, or None (value = raw)."""
        timeline = self._timelines.get(metric)
        if timeline is None:
            timeline = self._timelines[metric] = self._timeline(metric)
            if len(timeline[1]) == 1:
                self.fixed[metric] = timeline[1][0]
        starts, choices = timeline
        if len(choices) == 1:
            return choices[0]
        return choices[bisect_right(starts, at) - 1]


def calibrate(
    rows: Sequence[ReadingRow], histories: Mapping[str, ModelHistory], rh_at: Mapping[tuple[str, float], float]
) -> list[ReadingRow]:
    """`rows` with `value` and `calibration_id` set from raw and flags (the incoming value is ignored).

    Rows may come from many devices (a live batch): `histories[device_id]` is each device's
    history, `rh_at[(device_id, time)]` the `humidity_input` at that time. Hot path: a dict
    lookup per reading (a bisect where a device's models change over time), and each model
    runs once, vectorised, on all rows it applies to.
    """
    out = list(rows)
    isnan = math.isnan
    groups: dict[int, list[int]] = {}
    models: dict[int, tuple[Model, bool]] = {}  # id -> (model, clip at zero)
    metrics = METRICS
    no_value, varies = _NO_VALUE, _VARIES
    # a message's rows share one device id object: its history is looked up once per run of them
    device: str | None = None
    history: ModelHistory | None = None
    fixed: dict[str, Choice | None] = {}
    for i, r in enumerate(rows):
        ts, device_id, metric, raw, given, flags, given_id = r
        spec = metrics.get(metric)
        if flags & no_value or spec is None:
            if given is not None or given_id is not None:
                out[i] = (ts, device_id, metric, raw, None, flags, None)
            continue
        if device_id is not device:
            device, history = device_id, histories[device_id]
            fixed = history.fixed
        choice = fixed.get(metric, varies)
        if choice is varies:
            assert history is not None
            choice = history.choose(metric, ts)
        if choice is None:  # identity without an id, as IdentityModel.apply would give
            value = None if isnan(raw) else raw if raw >= 0.0 or spec.can_be_negative else 0.0
            if given != value or given_id is not None:  # rows are rebuilt only where they change
                out[i] = (ts, device_id, metric, raw, value, flags, None)
            continue
        cal_id = choice[0]
        idx = groups.get(cal_id)
        if idx is None:
            idx = groups[cal_id] = []
            models[cal_id] = (choice[1], not spec.can_be_negative)
        idx.append(i)
    nan = math.nan
    for cal_id, idx in groups.items():
        model, clip = models[cal_id]
        x = np.array([rows[i][3] for i in idx], dtype=np.float64)
        rh = None
        if model.needs_rh:
            rh = np.array([rh_at.get((rows[i][1], rows[i][0]), nan) for i in idx], dtype=np.float64)
        for i, v in zip(idx, model.apply(x, rh, clip_at_zero=clip).tolist(), strict=True):
            ts, device_id, metric, raw, _value, flags, _cid = rows[i]
            out[i] = (ts, device_id, metric, raw, None if isnan(v) else v, flags, cal_id)
    return out


def calibrate_series(
    history: ModelHistory, metric: str, times: npt.NDArray[np.float64], raws: npt.NDArray[np.float64],
    flags: npt.NDArray[np.int64], rh: npt.NDArray[np.float64],
) -> tuple[list[float | None], list[int | None]]:
    """`calibrate` for rows of one device and one metric given as columns (the importer's): the
    (value, calibration id) `calibrate` gives each row, by the same rules (tests/calibration/
    test_engine_columns.py compares them), with each interval's model applied once. `rh` is the
    `humidity_input` at each row's time (NaN where there is none)."""
    n = len(times)
    spec = METRICS.get(metric)
    if spec is None:  # rule 2: no value, no id
        return [None] * n, [None] * n
    values = np.full(n, np.nan)
    ids = np.full(n, None, dtype=object)
    has_value = (flags & _NO_VALUE) == 0
    starts, choices = history.timeline(metric)
    which = np.searchsorted(np.array(starts), times, side="right") - 1 if len(choices) > 1 else np.zeros(n, np.int64)
    for k, choice in enumerate(choices):
        rows = has_value & (which == k)
        if not rows.any():
            continue
        x = raws[rows]
        if choice is None:  # identity without an id (rule 3: clipped where the metric cannot be negative)
            values[rows] = x if spec.can_be_negative else np.where((x >= 0.0) | np.isnan(x), x, 0.0)
            continue
        cal_id, model = choice
        values[rows] = model.apply(x, rh[rows] if model.needs_rh else None, clip_at_zero=not spec.can_be_negative)
        ids[rows] = cal_id
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = None
    return out, ids.tolist()


def calibrate_device(
    rows: Sequence[EngineRow], device_models: Iterable[ModelVersion], type_defaults: Iterable[ModelVersion] = ()
) -> list[Calibrated]:
    """(value, calibration id) of each row of one device, given its versions and its type's defaults.

    The device has one humidity per time: rows of one time giving two different rh are refused.
    """
    readings: list[ReadingRow] = [(ts, "", metric, raw, None, flags, None) for ts, metric, raw, flags, _rh in rows]
    rh_at: dict[tuple[str, float], float] = {}
    for ts, _metric, _raw, _flags, rh in rows:
        known = rh_at.setdefault(("", ts), rh)
        if known != rh and not (math.isnan(known) and math.isnan(rh)):
            raise ValueError(f"two humidities ({known!r}, {rh!r}) for one time {ts!r}")
    history = {"": ModelHistory(device_models, type_defaults)}
    return [(r[4], r[6]) for r in calibrate(readings, history, rh_at)]
