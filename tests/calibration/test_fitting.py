"""Fitting recovers known coefficients from synthetic co-location data, and refuses bad fits."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.fitting import Aligned, FitError, align, fit
from calibration.models import LinearModel, MultilinearRHModel
from calibration.series import HourlySeries

NOISE = 1.5  # µg/m³, reference-grade noise added to the truth
# Relative errors of small coefficients (RH term -0.086, intercepts of a few µg/m³) scale
# with sigma / sqrt(n): two years of hourly pairs put them near 0.5 %, well inside 2 %.
HOURS = 24 * 730


def colocation(seed: int, *, with_rh: bool) -> tuple[HourlySeries, HourlySeries, dict[str, float]]:
    """A device that reads truth through known coefficients: ref = a*raw + b*RH + c + noise."""
    rng = np.random.default_rng(seed)
    hours = HOURS
    times = np.datetime64("2025-01-01T00:00:00", "s") + np.arange(hours) * np.timedelta64(3600, "s")
    raw = rng.gamma(shape=3.0, scale=10.0, size=hours) + 2.0
    rh = rng.uniform(20.0, 95.0, size=hours)
    truth = {"a": 0.52, "b": -0.086, "c": 5.75} if with_rh else {"a": 0.64, "b": 0.0, "c": 5.0}
    ref = truth["a"] * raw + truth["b"] * rh + truth["c"] + rng.normal(0, NOISE, hours)
    device = HourlySeries(times=times, pm25=raw, rh=rh)
    reference = HourlySeries(times=times, pm25=ref)
    return device, reference, truth


@pytest.mark.parametrize("robust", [False, True])
def test_linear_fit_recovers_coefficients(robust: bool) -> None:
    device, reference, truth = colocation(1, with_rh=False)
    result = fit(align(device, reference), "linear", robust=robust)
    assert isinstance(result.model, LinearModel)
    slope_err = abs(result.model.a - truth["a"]) / truth["a"]
    intercept_err = abs(result.model.b - truth["c"]) / truth["c"]
    ratio = result.after.rmse / NOISE
    print(
        f"\nlinear ({'bisquare' if robust else 'ols'}): a={result.model.a:.4f} (err {slope_err:.2%}), "
        f"b={result.model.b:.4f} (err {intercept_err:.2%}), RMSE {result.after.rmse:.3f} = {ratio:.3f} x noise"
    )
    assert slope_err < 0.02 and intercept_err < 0.02
    assert ratio < 1.1
    assert result.before.rmse > 3 * result.after.rmse


@pytest.mark.parametrize("robust", [False, True])
def test_multilinear_fit_recovers_coefficients(robust: bool) -> None:
    device, reference, truth = colocation(2, with_rh=True)
    result = fit(align(device, reference), "multilinear_rh", robust=robust)
    assert isinstance(result.model, MultilinearRHModel)
    errors = {
        "a": abs(result.model.a - truth["a"]) / abs(truth["a"]),
        "b": abs(result.model.b - truth["b"]) / abs(truth["b"]),
        "c": abs(result.model.c - truth["c"]) / abs(truth["c"]),
    }
    ratio = result.after.rmse / NOISE
    print(
        f"\nmultilinear_rh ({'bisquare' if robust else 'ols'}): a={result.model.a:.4f} b={result.model.b:.5f} "
        f"c={result.model.c:.4f}; errors "
        + ", ".join(f"{k} {v:.2%}" for k, v in errors.items())
        + f"; RMSE {result.after.rmse:.3f} = {ratio:.3f} x noise; n={result.after.n}"
    )
    assert max(errors.values()) < 0.02
    assert ratio < 1.1


def test_bisquare_resists_outliers_where_ols_does_not() -> None:
    device, reference, truth = colocation(3, with_rh=False)
    ref = reference.pm25.copy()
    rng = np.random.default_rng(9)
    bad = rng.choice(ref.size, size=ref.size // 20, replace=False)
    ref[bad] += 150.0  # 5 % of hours hit by a local plume at the station
    spoiled = HourlySeries(times=reference.times, pm25=ref)
    ols = fit(align(device, spoiled), "linear")
    bisquare = fit(align(device, spoiled), "linear", robust=True)
    assert isinstance(ols.model, LinearModel) and isinstance(bisquare.model, LinearModel)
    ols_err = abs(ols.model.b - truth["c"])
    bisquare_err = abs(bisquare.model.b - truth["c"])
    print(f"\noutliers: OLS intercept off by {ols_err:.2f}, bisquare by {bisquare_err:.2f}")
    assert bisquare_err < 0.25 * ols_err
    assert abs(bisquare.model.a - truth["a"]) / truth["a"] < 0.02


def test_too_few_points_refuses() -> None:
    device, reference, _ = colocation(4, with_rh=False)
    short = HourlySeries(times=device.times[:20], pm25=device.pm25[:20])
    with pytest.raises(FitError, match="only 20 paired hours"):
        fit(align(short, reference), "linear")


def test_flat_input_refuses() -> None:
    times = np.datetime64("2025-01-01T00:00:00", "s") + np.arange(100) * np.timedelta64(3600, "s")
    aligned = Aligned(times=times, raw=np.full(100, 12.0), rh=np.full(100, 50.0), reference=np.linspace(5, 20, 100))
    with pytest.raises(FitError, match="barely varies"):
        fit(aligned, "linear")


def test_constant_rh_refuses_multilinear() -> None:
    device, reference, _ = colocation(5, with_rh=False)
    assert device.rh is not None
    flat = HourlySeries(times=device.times, pm25=device.pm25, rh=np.full(device.rh.shape, 55.0))
    with pytest.raises(FitError, match="RH barely varies"):
        fit(align(flat, reference), "multilinear_rh")


def test_collinear_rh_refuses_multilinear() -> None:
    device, reference, _ = colocation(6, with_rh=False)
    collinear = HourlySeries(times=device.times, pm25=device.pm25, rh=2.0 * device.pm25 + 10.0)
    with pytest.raises(FitError, match=r"collinear|degenerate|ill-conditioned"):
        fit(align(collinear, reference), "multilinear_rh")


def test_negative_slope_refuses() -> None:
    device, reference, _ = colocation(7, with_rh=False)
    flipped = HourlySeries(times=reference.times, pm25=100.0 - reference.pm25)
    with pytest.raises(FitError, match="not positive"):
        fit(align(device, flipped), "linear")


def test_align_uses_common_finite_hours_only() -> None:
    device, reference, _ = colocation(8, with_rh=False)
    ref = reference.pm25.copy()
    ref[:10] = np.nan
    shifted = HourlySeries(times=reference.times[5:], pm25=ref[5:])
    aligned = align(device, shifted)
    assert aligned.times.size == HOURS - 10
    assert aligned.times[0] == device.times[10]
