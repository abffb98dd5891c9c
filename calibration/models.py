"""Calibration models: a JSON spec in the `calibrations` table becomes a vectorised function.

Every model maps a raw sensor series `x` (and, for some, the sensor's relative humidity)
to a calibrated series. Three rules hold for all of them, because the calibration engine
(`calibration.engine`, used live and for history) relies on them:

* NaN in gives NaN out (a missing reading stays missing, it is never invented);
* a model that needs RH gives NaN wherever RH is NaN or not given at all;
* with `clip_at_zero` (the default) the output is never negative: a concentration below
  zero is a fitting artefact. The engine turns clipping off for quantities that can be
  negative (`MetricSpec.can_be_negative`: temperature, RSSI).

Specs are plain JSON objects with a ``type`` key; `parse_model` validates them and says
exactly what is wrong, so a bad row in `calibrations` fails loudly at load time rather
than producing silent nonsense for every reading.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EPA_INPUTS = ("cf1", "atm")
EpaInput = Literal["cf1", "atm"]


class CalibrationModelError(ValueError):
    """A calibration spec is malformed or asks for something the model cannot do."""


def _as_float_array(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _rh_array(rh: npt.ArrayLike | None, shape: tuple[int, ...]) -> FloatArray:
    """RH broadcast to the shape of x; `None` becomes all-NaN so RH models give NaN."""
    if rh is None:
        return np.full(shape, np.nan)
    return np.broadcast_to(_as_float_array(rh), shape).astype(np.float64)


def _clip(values: FloatArray) -> FloatArray:
    """Clip at zero while keeping NaN (np.maximum would keep NaN too, but be explicit)."""
    out = np.where(np.isnan(values), np.nan, np.maximum(values, 0.0))
    return out.astype(np.float64)


class Model(ABC):
    """A calibration model; subclasses are immutable and built by `parse_model`."""

    type_name: ClassVar[str]
    needs_rh: ClassVar[bool] = False

    @abstractmethod
    def _evaluate(self, x: FloatArray, rh: FloatArray) -> FloatArray:
        """The model's equation, before NaN handling and clipping."""

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """The JSON spec that `parse_model` turns back into an equal model."""

    def apply(self, x: npt.ArrayLike, rh: npt.ArrayLike | None = None, *, clip_at_zero: bool = True) -> FloatArray:
        """Calibrate `x` (any shape); NaN in gives NaN out; clipped at zero unless told otherwise."""
        xs = _as_float_array(x)
        rhs = _rh_array(rh, xs.shape)
        with np.errstate(invalid="ignore"):
            out = self._evaluate(xs, rhs)
        out = np.where(np.isnan(xs), np.nan, out)
        if self.needs_rh:
            out = np.where(np.isnan(rhs), np.nan, out)
        out = np.asarray(out, dtype=np.float64)
        return _clip(out) if clip_at_zero else out


@dataclass(frozen=True)
class IdentityModel(Model):
    """value = raw; what the engine applies (without a calibration id) when no model is known."""

    type_name: ClassVar[str] = "identity"

    def _evaluate(self, x: FloatArray, rh: FloatArray) -> FloatArray:
        return x.copy()

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type_name}


@dataclass(frozen=True)
class LinearModel(Model):
    """value = a * raw + b, the usual co-location fit."""

    a: float
    b: float
    type_name: ClassVar[str] = "linear"

    def _evaluate(self, x: FloatArray, rh: FloatArray) -> FloatArray:
        return self.a * x + self.b

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type_name, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class MultilinearRHModel(Model):
    """value = a * raw + b * RH + c; optical sensors over-read in humid air, RH corrects it."""

    a: float
    b: float
    c: float
    type_name: ClassVar[str] = "multilinear_rh"
    needs_rh: ClassVar[bool] = True

    def _evaluate(self, x: FloatArray, rh: FloatArray) -> FloatArray:
        return self.a * x + self.b * rh + self.c

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type_name, "a": self.a, "b": self.b, "c": self.c}


# Barkjohn, Gantt & Clements (2021), "Development and application of a United States-wide
# correction for PM2.5 data collected with the PurpleAir sensor", Atmos. Meas. Tech. 14,
# 4617-4637, doi:10.5194/amt-14-4617-2021, final equation:
#     PM2.5 = 0.524 * PA_cf1 - 0.0862 * RH + 5.75
BARKJOHN_2021_SLOPE = 0.524
BARKJOHN_2021_RH = -0.0862
BARKJOHN_2021_INTERCEPT = 5.75

# US EPA (2021), "Sensor data cleaning and correction: Application on the AirNow Fire and
# Smoke Map" (EPA Science Inventory record 353088, slide 26), the piecewise extension for
# high concentrations. x is the PMS5003 "cf_atm" PM2.5 channel:
#     0   <= x < 30  : 0.524 x - 0.0862 RH + 5.75
#     30  <= x < 50  : [0.786 s1 + 0.524 (1 - s1)] x - 0.0862 RH + 5.75,  s1 = x/20 - 3/2
#     50  <= x < 210 : 0.786 x - 0.0862 RH + 5.75
#     210 <= x < 260 : [0.69 s2 + 0.786 (1 - s2)] x - 0.0862 RH (1 - s2)
#                      + 2.966 s2 + 5.75 (1 - s2) + 8.84e-4 x^2 s2,       s2 = x/50 - 21/5
#     260 <= x       : 2.966 + 0.69 x + 8.84e-4 x^2
EPA_2021_MID_SLOPE = 0.786
EPA_2021_HIGH_SLOPE = 0.69
EPA_2021_HIGH_QUADRATIC = 8.84e-4
EPA_2021_HIGH_INTERCEPT = 2.966
EPA_2021_PIECE_EDGES = (30.0, 50.0, 210.0, 260.0)


def barkjohn_2021(x: FloatArray, rh: FloatArray) -> FloatArray:
    """The Barkjohn et al. (2021) US-wide correction (see the constants above for the source)."""
    return BARKJOHN_2021_SLOPE * x + BARKJOHN_2021_RH * rh + BARKJOHN_2021_INTERCEPT


def epa_2021_extended(x: FloatArray, rh: FloatArray) -> FloatArray:
    """The five-piece EPA 2021 correction for the cf_atm channel, written as published."""
    s1 = x / 20.0 - 3.0 / 2.0
    s2 = x / 50.0 - 21.0 / 5.0
    rh_term = BARKJOHN_2021_RH * rh
    low = barkjohn_2021(x, rh)
    blend_low = (EPA_2021_MID_SLOPE * s1 + BARKJOHN_2021_SLOPE * (1.0 - s1)) * x + rh_term + BARKJOHN_2021_INTERCEPT
    mid = EPA_2021_MID_SLOPE * x + rh_term + BARKJOHN_2021_INTERCEPT
    blend_high = (
        (EPA_2021_HIGH_SLOPE * s2 + EPA_2021_MID_SLOPE * (1.0 - s2)) * x
        + rh_term * (1.0 - s2)
        + EPA_2021_HIGH_INTERCEPT * s2
        + BARKJOHN_2021_INTERCEPT * (1.0 - s2)
        + EPA_2021_HIGH_QUADRATIC * x**2 * s2
    )
    high = EPA_2021_HIGH_INTERCEPT + EPA_2021_HIGH_SLOPE * x + EPA_2021_HIGH_QUADRATIC * x**2
    e1, e2, e3, e4 = EPA_2021_PIECE_EDGES
    conditions = [x < e1, x < e2, x < e3, x < e4, x >= e4]
    return np.select(conditions, [low, blend_low, mid, blend_high, high], default=np.nan)


@dataclass(frozen=True)
class EpaPms5003Model(Model):
    """The US EPA correction for PMS5003-family sensors (PurpleAir, AirBox, LASS boxes).

    `input` states which PMS5003 series the raw value is, because the two published
    equations were fitted on different channels:

    * ``cf1``: Barkjohn et al. (2021) on the CF=1 channel, one linear equation. It was
      fitted on 24-hour data up to a few hundred µg/m³; above that (heavy smoke) it
      under-corrects, which is why the EPA map moved to the piecewise form below.
    * ``atm``: the EPA 2021 five-piece extension on the atmospheric (cf_atm) channel,
      identical to Barkjohn 2021 below 30 and quadratic above 260.

    RH is the sensor's own relative humidity in %, as in both sources.
    """

    input: EpaInput
    type_name: ClassVar[str] = "epa_pms5003_2021"
    needs_rh: ClassVar[bool] = True

    def _evaluate(self, x: FloatArray, rh: FloatArray) -> FloatArray:
        if self.input == "cf1":
            return barkjohn_2021(x, rh)
        return epa_2021_extended(x, rh)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type_name, "input": self.input}


def _number(spec: Mapping[str, Any], key: str, model_type: str) -> float:
    if key not in spec:
        raise CalibrationModelError(f"{model_type} model needs '{key}' (a number); spec has {sorted(spec)}")
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalibrationModelError(f"{model_type} model: '{key}' must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise CalibrationModelError(f"{model_type} model: '{key}' must be finite, got {value!r}")
    return number


def _reject_unknown_keys(spec: Mapping[str, Any], allowed: set[str], model_type: str) -> None:
    unknown = set(spec) - allowed - {"type"}
    if unknown:
        raise CalibrationModelError(
            f"{model_type} model: unknown key(s) {sorted(unknown)}; allowed {sorted(allowed)}"
        )


def parse_model(spec: Mapping[str, Any]) -> Model:
    """Build a model from its JSON spec, or raise CalibrationModelError saying what is wrong."""
    if not isinstance(spec, Mapping):
        raise CalibrationModelError(f"a calibration spec must be a JSON object, got {type(spec).__name__}")
    model_type = spec.get("type")
    if model_type == IdentityModel.type_name:
        _reject_unknown_keys(spec, set(), model_type)
        return IdentityModel()
    if model_type == LinearModel.type_name:
        _reject_unknown_keys(spec, {"a", "b"}, model_type)
        return LinearModel(a=_number(spec, "a", model_type), b=_number(spec, "b", model_type))
    if model_type == MultilinearRHModel.type_name:
        _reject_unknown_keys(spec, {"a", "b", "c"}, model_type)
        return MultilinearRHModel(
            a=_number(spec, "a", model_type), b=_number(spec, "b", model_type), c=_number(spec, "c", model_type)
        )
    if model_type == EpaPms5003Model.type_name:
        _reject_unknown_keys(spec, {"input"}, model_type)
        series = spec.get("input")
        if series == "cf1":
            return EpaPms5003Model(input="cf1")
        if series == "atm":
            return EpaPms5003Model(input="atm")
        raise CalibrationModelError(
            f"{model_type} model needs 'input' = one of {list(EPA_INPUTS)} "
            f"(which PMS5003 channel the raw value is), got {series!r}"
        )
    known = [cls.type_name for cls in (IdentityModel, LinearModel, MultilinearRHModel, EpaPms5003Model)]
    raise CalibrationModelError(f"unknown calibration model type {model_type!r}; known types: {known}")


# Sensor types whose firmware reports the PMS5003 atmospheric channel as `pm25`: the
# citysense driver and the LASS/AirBox firmwares publish cf_atm ("s_d0" in LASS).
_PMS5003_FAMILY = frozenset({"pms5003", "pms5003t", "pms5003st", "pms7003", "pms1003", "pms3003", "pmsa003"})


def default_model(sensor_type: str | None, metric: str) -> dict[str, Any] | None:
    """The spec to use when a device has no model of its own; None means identity.

    PMS5003-family PM2.5 gets the EPA correction on the atmospheric channel, because
    that is the channel the citysense and LASS firmwares report as `pm25`.
    """
    if sensor_type is None or metric != "pm25":
        return None
    if sensor_type.strip().lower() in _PMS5003_FAMILY:
        return EpaPms5003Model(input="atm").to_spec()
    return None
