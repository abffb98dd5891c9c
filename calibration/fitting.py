"""Fit a calibration model from co-location data: device hours aligned to reference hours.

Ordinary least squares (numpy.linalg.lstsq) is the default because it is what the
published corrections used; `robust=True` switches to Huber-weighted IRLS, which keeps
a handful of bad hours (a spider in the inlet, a station calibration span) from
dragging the line. A fit refuses, with the reason, when it would store a model nobody
should trust: too few pairs, no spread in the input, or a singular design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from calibration.evaluation import Agreement, agreement
from calibration.models import LinearModel, Model, MultilinearRHModel
from calibration.series import FloatArray, HourlySeries, TimeArray

FitKind = Literal["linear", "multilinear_rh"]

MIN_POINTS_DEFAULT = 48
HUBER_K = 1.345  # 95 % efficiency under Gaussian noise (Huber 1981)
MAD_TO_SIGMA = 1.4826
MAX_CONDITION = 1e8
MIN_INPUT_SPREAD = 1.0  # µg/m³ standard deviation; below this the slope is noise
MIN_RH_SPREAD = 2.0  # % RH standard deviation


class FitError(ValueError):
    """A fit was refused; the message says why, and nothing is stored."""


@dataclass(frozen=True)
class Aligned:
    """Device and reference values on the hours where both exist."""

    times: TimeArray
    raw: FloatArray
    rh: FloatArray
    reference: FloatArray


@dataclass(frozen=True)
class FitResult:
    """A fitted model with the statistics that justify (or not) storing it."""

    model: Model
    method: str
    before: Agreement
    after: Agreement
    iterations: int
    aligned: Aligned

    def fit_stats(self) -> dict[str, Any]:
        """What goes into `calibrations.fit_stats`."""
        return {
            "method": self.method,
            "n": self.after.n,
            "iterations": self.iterations,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "from": str(self.aligned.times[0]) + "Z",
            "to": str(self.aligned.times[-1]) + "Z",
        }


def align(device: HourlySeries, reference: HourlySeries) -> Aligned:
    """Pairs on common hours where both PM2.5 values are finite; device RH rides along."""
    common, dev_idx, ref_idx = np.intersect1d(device.times, reference.times, return_indices=True)
    raw = device.pm25[dev_idx]
    ref = reference.pm25[ref_idx]
    rh = device.rh[dev_idx] if device.rh is not None else np.full(common.shape, np.nan)
    ok = np.isfinite(raw) & np.isfinite(ref)
    return Aligned(times=common[ok], raw=raw[ok], rh=rh[ok], reference=ref[ok])


def _design(aligned: Aligned, kind: FitKind) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix, target and the mask of rows used."""
    if kind == "linear":
        mask = np.ones(aligned.raw.shape, dtype=bool)
        columns = [aligned.raw, np.ones_like(aligned.raw)]
    else:
        mask = np.isfinite(aligned.rh)
        columns = [aligned.raw[mask], aligned.rh[mask], np.ones(int(mask.sum()))]
    return np.column_stack(columns), aligned.reference[mask], mask


def _check_design(design: np.ndarray, kind: FitKind, min_points: int) -> None:
    n = design.shape[0]
    if n < min_points:
        raise FitError(f"only {n} paired hours (need at least {min_points}); extend --from/--to or check the data")
    spread = float(np.std(design[:, 0]))
    if spread < MIN_INPUT_SPREAD:
        raise FitError(
            f"device PM2.5 barely varies (std {spread:.2f} µg/m³ < {MIN_INPUT_SPREAD}); the slope cannot be "
            "told apart from noise, co-locate through a period with changing pollution"
        )
    if kind == "multilinear_rh":
        rh_spread = float(np.std(design[:, 1]))
        if rh_spread < MIN_RH_SPREAD:
            raise FitError(
                f"RH barely varies (std {rh_spread:.2f} % < {MIN_RH_SPREAD}); the RH term is not identifiable, "
                "fit the linear model instead"
            )
    rank = int(np.linalg.matrix_rank(design))
    if rank < design.shape[1]:
        raise FitError(f"degenerate design (rank {rank} < {design.shape[1]} columns): inputs are collinear")
    scaled = design / np.maximum(np.abs(design).max(axis=0), 1e-12)
    condition = float(np.linalg.cond(scaled))
    if condition > MAX_CONDITION:
        raise FitError(f"ill-conditioned design (condition number {condition:.3g}); inputs are nearly collinear")


def _huber_irls(design: np.ndarray, target: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, int]:
    """Huber M-estimate by iteratively reweighted least squares, scale from the MAD."""
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    for iteration in range(1, max_iter + 1):
        residual = target - design @ coef
        scale = MAD_TO_SIGMA * float(np.median(np.abs(residual - np.median(residual))))
        if scale <= 1e-12:
            return coef, iteration
        u = np.abs(residual) / (HUBER_K * scale)
        weights = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))
        root = np.sqrt(weights)
        new_coef, *_ = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)
        if np.allclose(new_coef, coef, rtol=1e-9, atol=1e-9):
            return new_coef, iteration
        coef = new_coef
    return coef, max_iter


def fit(
    aligned: Aligned,
    kind: FitKind = "linear",
    *,
    robust: bool = False,
    min_points: int = MIN_POINTS_DEFAULT,
) -> FitResult:
    """Fit `kind` to the aligned pairs; raises FitError instead of returning a bad model."""
    if kind not in ("linear", "multilinear_rh"):
        raise FitError(f"unknown fit kind {kind!r}; use 'linear' or 'multilinear_rh'")
    design, target, mask = _design(aligned, kind)
    _check_design(design, kind, min_points)
    if robust:
        coef, iterations = _huber_irls(design, target)
    else:
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        iterations = 1
    if not np.all(np.isfinite(coef)):
        raise FitError(f"the fit produced non-finite coefficients {coef.tolist()}")
    if coef[0] <= 0:
        raise FitError(
            f"fitted slope {coef[0]:.4g} is not positive: the device does not track the reference "
            "(wrong station, wrong time zone or a broken sensor?)"
        )
    model: Model
    if kind == "linear":
        model = LinearModel(a=float(coef[0]), b=float(coef[1]))
    else:
        model = MultilinearRHModel(a=float(coef[0]), b=float(coef[1]), c=float(coef[2]))
    used = Aligned(
        times=aligned.times[mask], raw=aligned.raw[mask], rh=aligned.rh[mask], reference=aligned.reference[mask]
    )
    calibrated = model.apply(used.raw, used.rh)
    return FitResult(
        model=model,
        method=("huber_irls" if robust else "ols") + f":{kind}",
        before=agreement(used.raw, used.reference),
        after=agreement(calibrated, used.reference),
        iterations=iterations,
        aligned=used,
    )
