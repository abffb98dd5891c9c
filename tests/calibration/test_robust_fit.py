"""The bisquare fit resists outlier hours in the device readings; it says which hours it left out."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.fitting import align, bisquare_weights, fit
from devtools.colocation import Fault, generate

SEEDS = (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize("seed", SEEDS)
def test_bisquare_recovers_offset_and_gain_with_five_percent_outlier_hours(seed: int) -> None:
    campaign = generate(seed, faults=(Fault("colo-2", "outliers", 0.0, 0.05),))
    truth = campaign.boxes[1]
    result = fit(align(campaign.hourly("colo-2"), campaign.reference), "linear", robust=True)
    spec = result.model.to_spec()
    print(f"\nseed {seed}: gain {spec['a']:.4f} (true {truth.gain}), offset {spec['b']:.3f} (true {truth.offset})")
    assert abs(spec["b"] - truth.offset) < 0.2
    assert abs(spec["a"] / truth.gain - 1) < 0.01
    least_squares = fit(align(campaign.hourly("colo-2"), campaign.reference), "linear")
    assert abs(least_squares.model.to_spec()["b"] - truth.offset) > 2.0  # the scenario really is hostile


def test_the_outlier_hours_are_the_ones_reported_and_left_out() -> None:
    campaign = generate(3, faults=(Fault("colo-2", "outliers", 0.0, 0.05),))
    result = fit(align(campaign.hourly("colo-2"), campaign.reference), "linear", robust=True)
    outliers = {str(t) + "Z" for t in campaign.outlier_hours["colo-2"]}
    reported = {hour for hour, _ in result.downweighted}
    assert outliers <= reported
    assert len(reported - outliers) < 0.02 * result.after.n  # few clean hours among them
    assert result.rejected >= len(outliers)
    assert result.kept_after.n == result.after.n - result.rejected
    assert result.kept_after.rmse < 2.0 < result.after.rmse  # the kept hours fit; all hours include the plumes
    stats = result.fit_stats()
    assert stats["downweighted"]["count"] == len(result.downweighted)
    assert stats["kept"]["after"]["rmse"] == round(result.kept_after.rmse, 4)
    assert stats["method"] == "bisquare_irls:linear"


def test_clean_data_robust_and_least_squares_agree() -> None:
    campaign = generate(8)
    aligned = align(campaign.hourly("colo-1"), campaign.reference)
    robust, plain = fit(aligned, robust=True).model.to_spec(), fit(aligned).model.to_spec()
    assert abs(robust["a"] / plain["a"] - 1) < 0.005
    assert abs(robust["b"] - plain["b"]) < 0.1
    assert fit(aligned).downweighted == []


def test_bisquare_weight_is_zero_beyond_the_tuning_constant() -> None:
    weights = bisquare_weights(np.array([0.0, 2.0, 4.6, 4.7, -10.0]), 1.0)
    assert weights[0] == 1.0 and 0 < weights[2] < weights[1] < 1
    assert weights[3] == 0.0 and weights[4] == 0.0
