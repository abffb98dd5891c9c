"""The EPA/Barkjohn corrections reproduce the published equations; specs validate loudly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.models import (
    CalibrationModelError,
    EpaPms5003Model,
    IdentityModel,
    LinearModel,
    MultilinearRHModel,
    default_model,
    parse_model,
)


def barkjohn_published(x: float, rh: float) -> float:
    """Barkjohn et al. 2021 (AMT 14, 4617): PM2.5 = 0.524 PA_cf1 - 0.0862 RH + 5.75."""
    return 0.524 * x - 0.0862 * rh + 5.75


def epa_extended_published(x: float, rh: float) -> float:
    """EPA 2021 AirNow Fire and Smoke Map correction, slide 26, transcribed piece by piece."""
    if x < 30:
        return 0.524 * x - 0.0862 * rh + 5.75
    if x < 50:
        return (0.786 * (x / 20 - 3 / 2) + 0.524 * (1 - (x / 20 - 3 / 2))) * x - 0.0862 * rh + 5.75
    if x < 210:
        return 0.786 * x - 0.0862 * rh + 5.75
    if x < 260:
        s = x / 50 - 21 / 5
        return (
            (0.69 * s + 0.786 * (1 - s)) * x
            - 0.0862 * rh * (1 - s)
            + 2.966 * s
            + 5.75 * (1 - s)
            + 8.84 * (10**-4) * x**2 * s
        )
    return 2.966 + 0.69 * x + 8.84 * (10**-4) * x**2


GRID_X = np.concatenate([np.linspace(0, 600, 601), np.array([12.3, 35.7, 111.1, 233.3, 1000.0])])
GRID_RH = np.array([0.0, 15.0, 40.0, 55.5, 70.0, 85.0, 99.0])


@pytest.mark.parametrize("rh", GRID_RH)
def test_cf1_model_is_barkjohn_2021_at_every_grid_point(rh: float) -> None:
    model = parse_model({"type": "epa_pms5003_2021", "input": "cf1"})
    got = model.apply(GRID_X, np.full(GRID_X.shape, rh))
    expected = np.array([max(barkjohn_published(x, rh), 0.0) for x in GRID_X])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("rh", GRID_RH)
def test_atm_model_is_the_epa_2021_extension_at_every_grid_point(rh: float) -> None:
    model = parse_model({"type": "epa_pms5003_2021", "input": "atm"})
    got = model.apply(GRID_X, np.full(GRID_X.shape, rh))
    expected = np.array([max(epa_extended_published(x, rh), 0.0) for x in GRID_X])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("edge", [30.0, 50.0, 210.0, 260.0])
@pytest.mark.parametrize("rh", [20.0, 50.0, 90.0])
def test_atm_model_matches_each_piece_on_both_sides_of_every_edge(edge: float, rh: float) -> None:
    model = EpaPms5003Model(input="atm")
    below, above = np.nextafter(edge, 0.0), edge
    for x in (below, above, edge - 0.5, edge + 0.5):
        got = float(model.apply(np.array([x]), np.array([rh]))[0])
        assert got == pytest.approx(max(epa_extended_published(x, rh), 0.0), abs=1e-9)
    left = float(model.apply(np.array([below]), np.array([rh]))[0])
    right = float(model.apply(np.array([above]), np.array([rh]))[0])
    assert abs(left - right) < 0.01, "the published blends make the correction continuous at each edge"


def test_atm_pieces_hit_known_values() -> None:
    """Hand-computed points, one per piece (RH 50 %)."""
    model = EpaPms5003Model(input="atm")
    x = np.array([10.0, 40.0, 100.0, 235.0, 300.0])
    expected = [
        0.524 * 10 - 4.31 + 5.75,
        (0.786 * 0.5 + 0.524 * 0.5) * 40 - 4.31 + 5.75,
        78.6 - 4.31 + 5.75,
        (0.69 * 0.5 + 0.786 * 0.5) * 235 - 4.31 * 0.5 + 2.966 * 0.5 + 5.75 * 0.5 + 8.84e-4 * 235**2 * 0.5,
        2.966 + 207.0 + 8.84e-4 * 90000,
    ]
    np.testing.assert_allclose(model.apply(x, np.full(5, 50.0)), expected, atol=1e-9)


def test_nan_in_nan_out_and_rh_models_need_rh() -> None:
    x = np.array([10.0, np.nan, 20.0])
    rh = np.array([50.0, 50.0, np.nan])
    epa = EpaPms5003Model(input="cf1").apply(x, rh)
    assert not math.isnan(epa[0]) and math.isnan(epa[1]) and math.isnan(epa[2])
    assert np.isnan(EpaPms5003Model(input="atm").apply(x, None)).all()
    assert np.isnan(MultilinearRHModel(1.0, -0.1, 2.0).apply(x, None)).all()
    linear = LinearModel(a=2.0, b=1.0).apply(x, None)
    assert linear[0] == 21.0 and math.isnan(linear[1]) and linear[2] == 41.0


def test_output_is_never_negative() -> None:
    x = np.array([0.0, 1.0, 2.0])
    assert (LinearModel(a=1.0, b=-5.0).apply(x, None) == 0.0).all()
    assert (EpaPms5003Model(input="cf1").apply(x, np.array([99.0, 99.0, 99.0])) >= 0).all()
    assert IdentityModel().apply(np.array([-3.0]), None)[0] == 0.0


def test_specs_round_trip() -> None:
    for spec in (
        {"type": "identity"},
        {"type": "linear", "a": 1.2, "b": -3.0},
        {"type": "multilinear_rh", "a": 0.5, "b": -0.08, "c": 5.0},
        {"type": "epa_pms5003_2021", "input": "cf1"},
        {"type": "epa_pms5003_2021", "input": "atm"},
    ):
        assert parse_model(spec).to_spec() == spec


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"type": "linear", "a": 1.0}, "needs 'b'"),
        ({"type": "linear", "a": "1", "b": 0}, "must be a number"),
        ({"type": "linear", "a": float("nan"), "b": 0}, "finite"),
        ({"type": "linear", "a": 1, "b": 0, "c": 2}, "unknown key"),
        ({"type": "epa_pms5003_2021"}, "input"),
        ({"type": "epa_pms5003_2021", "input": "raw"}, "input"),
        ({"type": "quadratic"}, "unknown calibration model type"),
        ({}, "unknown calibration model type"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(CalibrationModelError, match=reason):
        parse_model(spec)


def test_default_model_by_sensor_type() -> None:
    assert default_model("pms5003", "pm25") == {"type": "epa_pms5003_2021", "input": "atm"}
    assert default_model("PMS7003", "pm25") == {"type": "epa_pms5003_2021", "input": "atm"}
    assert default_model("pms5003", "pm10") is None
    assert default_model("sps30", "pm25") is None
    assert default_model(None, "pm25") is None


@settings(max_examples=200, deadline=None)
@given(
    x=st.lists(st.one_of(st.floats(-50, 2000), st.just(float("nan"))), min_size=1, max_size=40),
    rh=st.one_of(st.none(), st.floats(0, 100), st.just(float("nan"))),
    spec=st.sampled_from(
        [
            {"type": "identity"},
            {"type": "linear", "a": 0.7, "b": -4.0},
            {"type": "multilinear_rh", "a": 0.5, "b": -0.1, "c": 3.0},
            {"type": "epa_pms5003_2021", "input": "cf1"},
            {"type": "epa_pms5003_2021", "input": "atm"},
        ]
    ),
)
def test_every_model_keeps_the_three_rules(x: list[float], rh: float | None, spec: dict[str, object]) -> None:
    model = parse_model(spec)
    xs = np.array(x)
    out = model.apply(xs, None if rh is None else np.full(xs.shape, rh))
    assert out.shape == xs.shape
    assert bool(np.all(np.isnan(out[np.isnan(xs)])))
    finite = out[np.isfinite(out)]
    assert bool(np.all(finite >= 0))
    if model.needs_rh and (rh is None or math.isnan(rh)):
        assert bool(np.all(np.isnan(out)))
    elif not model.needs_rh:
        assert bool(np.all(np.isfinite(out[np.isfinite(xs)])))
