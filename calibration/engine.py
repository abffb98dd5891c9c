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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from calibration.models import IdentityModel, Model
from contracts.flags import NO_VALUE
from contracts.metrics import METRICS

# (time in Unix seconds, metric, raw, flags, rh of the same device and time or NaN)
EngineRow = tuple[float, str, float, int, float]
# (value or None, calibration id or None)
Calibrated = tuple[float | None, int | None]
# (calibration id, model)
Choice = tuple[int, Model]

_NO_VALUE = int(NO_VALUE)
_IDENTITY = IdentityModel()
_DEVICE_LEVEL, _TYPE_LEVEL = 1, 0  # higher wins


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


class ModelHistory:
    """The versions that can apply to one device: its own and its sensor type's defaults.

    `choose` is on the hot path; the time line of each metric is built once, on first use.
    """

    __slots__ = ("_ranked", "_timelines")

    def __init__(self, device_models: Iterable[ModelVersion], type_defaults: Iterable[ModelVersion] = ()) -> None:
        self._ranked: dict[str, list[tuple[int, ModelVersion]]] = {}
        for level, versions in ((_DEVICE_LEVEL, device_models), (_TYPE_LEVEL, type_defaults)):
            for version in versions:
                self._ranked.setdefault(version.metric, []).append((level, version))
        self._timelines: dict[str, tuple[list[float], list[Choice | None]]] = {}

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

    def choose(self, metric: str, at: float) -> Choice | None:
        """The (calibration id, model) applying to `metric` at `at`, or None (value = raw)."""
        timeline = self._timelines.get(metric)
        if timeline is None:
            timeline = self._timelines[metric] = self._timeline(metric)
        starts, choices = timeline
        if len(choices) == 1:
            return choices[0]
        return choices[bisect_right(starts, at) - 1]


def calibrate(rows: Sequence[EngineRow], histories: Sequence[ModelHistory]) -> list[Calibrated]:
    """Value and calibration id of each row; `histories[i]` is the history of row i's device.

    Rows may come from many devices (a live batch); each model runs once, vectorised, on
    all rows it applies to.
    """
    out: list[Calibrated] = [(None, None)] * len(rows)
    groups: dict[tuple[int | None, str], list[int]] = {}
    models: dict[tuple[int | None, str], Model] = {}
    metrics = METRICS
    for i, row in enumerate(rows):
        if row[3] & _NO_VALUE:
            continue
        metric = row[1]
        if metric not in metrics:
            continue
        choice = histories[i].choose(metric, row[0])
        key: tuple[int | None, str] = (None, metric) if choice is None else (choice[0], metric)
        idx = groups.get(key)
        if idx is None:
            idx = groups[key] = []
            models[key] = _IDENTITY if choice is None else choice[1]
        idx.append(i)
    for key, idx in groups.items():
        cal_id, metric = key
        model = models[key]
        x = np.array([rows[i][2] for i in idx], dtype=np.float64)
        rh = np.array([rows[i][4] for i in idx], dtype=np.float64) if model.needs_rh else None
        values = model.apply(x, rh, clip_at_zero=not metrics[metric].can_be_negative).tolist()
        for i, v in zip(idx, values, strict=True):
            out[i] = (None if math.isnan(v) else v, cal_id)
    return out


def calibrate_device(
    rows: Sequence[EngineRow], device_models: Iterable[ModelVersion], type_defaults: Iterable[ModelVersion] = ()
) -> list[Calibrated]:
    """`calibrate` for rows of one device, given its versions and its sensor type's defaults."""
    history = ModelHistory(device_models, type_defaults)
    return calibrate(rows, [history] * len(rows))
