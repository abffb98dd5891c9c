"""Fit a calibration model from co-location data: device hours aligned to reference hours.

Ordinary least squares (numpy.linalg.lstsq) is the default because it is what the
published corrections used. `robust=True` switches to Tukey's bisquare M-estimate by
iteratively reweighted least squares, started from a least-absolute-deviations fit, with
the residual scale re-estimated by the MAD at every step. Bisquare is *redescending*: an
hour whose residual exceeds `BISQUARE_C` robust standard deviations gets weight zero, so a
plume at one box or an inlet blocked for a day cannot tilt the line at all (Huber's weight
only decays as 1/residual, and 5 % of hours 50-150 µg/m³ too high moved its offset by
0.5 µg/m³). The result says which hours were down-weighted, and gives the agreement both on
all paired hours and on the hours kept (weight > 0).
A fit refuses, with the reason, when it would store a model nobody should trust: too few
pairs, no spread in the input, or a singular design.
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
BISQUARE_C = 4.685  # 95 % efficiency under Gaussian noise (Beaton & Tukey 1974)
DOWNWEIGHTED_BELOW = 0.5  # an hour with a bisquare weight under this is reported (|residual| > 2.5 sigma)
MAD_TO_SIGMA = 1.4826
LAD_ITERATIONS = 50
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
    """A fitted model with the statistics that justify (or not) storing it.

    `before`/`after` are raw and calibrated against the reference on every paired hour;
    `kept_before`/`kept_after` the same on the hours the fit kept (weight > 0; for least
    squares, every hour). `weights` holds each paired hour's final weight (1 for OLS).
    """

    model: Model
    method: str
    before: Agreement
    after: Agreement
    iterations: int
    aligned: Aligned
    weights: FloatArray
    kept_before: Agreement
    kept_after: Agreement
    scale: float

    @property
    def downweighted(self) -> list[tuple[str, float]]:
        """(hour start in UTC ISO 8601, weight) of the hours weighted under DOWNWEIGHTED_BELOW."""
        low = np.flatnonzero(self.weights < DOWNWEIGHTED_BELOW)
        return [(str(self.aligned.times[i]) + "Z", round(float(self.weights[i]), 4)) for i in low]

    @property
    def rejected(self) -> int:
        """Hours given weight zero (left out of the fit entirely)."""
        return int(np.count_nonzero(self.weights <= 0.0))

    def fit_stats(self) -> dict[str, Any]:
        """What goes into `calibrations.fit_stats` (and `calibrate fit --json`)."""
        return {
            "method": self.method,
            "n": self.after.n,
            "iterations": self.iterations,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "kept": {"n": self.kept_after.n, "before": self.kept_before.as_dict(), "after": self.kept_after.as_dict()},
            "residual_scale": round(self.scale, 4),
            "downweighted": {
                "count": len(self.downweighted),
                "rejected": self.rejected,
                "hours": [{"hour": hour, "weight": weight} for hour, weight in self.downweighted],
            },
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


def _weighted_lstsq(design: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    root = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def _mad_scale(residual: np.ndarray) -> float:
    return MAD_TO_SIGMA * float(np.median(np.abs(residual - np.median(residual))))


def _lad_start(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least absolute deviations by IRLS (weights 1/|r|): the start bisquare needs, because
    a least-squares start tilted by the outliers can lead the redescending weights astray."""
    coef = _weighted_lstsq(design, target, np.ones(target.shape))
    floor = max(1e-6, 1e-6 * float(np.median(np.abs(target))))
    for _ in range(LAD_ITERATIONS):
        residual = np.abs(target - design @ coef)
        new_coef = _weighted_lstsq(design, target, 1.0 / np.maximum(residual, floor))
        if np.allclose(new_coef, coef, rtol=1e-10, atol=1e-10):
            return new_coef
        coef = new_coef
    return coef


def bisquare_weights(residual: np.ndarray, scale: float) -> np.ndarray:
    """Tukey's bisquare weight (1 - u²)² for |u| < 1, else 0, with u = r / (BISQUARE_C · scale)."""
    u = residual / (BISQUARE_C * scale)
    return np.where(np.abs(u) < 1.0, (1.0 - u**2) ** 2, 0.0)


def _bisquare_irls(
    design: np.ndarray, target: np.ndarray, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Bisquare M-estimate: (coefficients, final weights, residual scale, iterations)."""
    coef = _lad_start(design, target)
    weights = np.ones(target.shape)
    scale = _mad_scale(target - design @ coef)
    for iteration in range(1, max_iter + 1):
        residual = target - design @ coef
        scale = _mad_scale(residual)
        if scale <= 1e-12:
            return coef, weights, scale, iteration
        weights = bisquare_weights(residual, scale)
        if int(np.count_nonzero(weights)) <= design.shape[1]:
            raise FitError("the robust fit kept too few hours to fit a line; the data has no consistent relation")
        new_coef = _weighted_lstsq(design, target, weights)
        if np.allclose(new_coef, coef, rtol=1e-9, atol=1e-9):
            coef = new_coef
            break
        coef = new_coef
    residual = target - design @ coef
    return coef, bisquare_weights(residual, scale), scale, iteration


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
        coef, weights, scale, iterations = _bisquare_irls(design, target)
    else:
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        weights = np.ones(target.shape)
        iterations = 1
        scale = float(np.std(target - design @ coef))
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
    kept = weights > 0.0
    return FitResult(
        model=model,
        method=("bisquare_irls" if robust else "ols") + f":{kind}",
        before=agreement(used.raw, used.reference),
        after=agreement(calibrated, used.reference),
        iterations=iterations,
        aligned=used,
        weights=weights,
        kept_before=agreement(used.raw[kept], used.reference[kept]),
        kept_after=agreement(calibrated[kept], used.reference[kept]),
        scale=scale,
    )
