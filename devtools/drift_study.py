"""Measure the drift detector's delays and false-alarm rate on seeded fleets: the figures docs/calibration.md quotes.

`python -m devtools.drift_study --seeds 30` runs, per seed, a healthy fleet (false alarms),
a 10 %/day gain drift and a ±30 % gain step from day 40 (detection delays), against
neighbours and against a co-located reference station, for each `--threshold` given.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np

from calibration.drift import DriftConfig, Site, detect_drift
from calibration.series import ONE_HOUR
from devtools.colocation import Fault, calibrated_fleet, hour_after

ONSET_DAY = 40.0
DAYS = 60


def _fleet(seed: int, faults: tuple[Fault, ...], reference: bool) -> tuple[np.datetime64, list[Site]]:
    if reference:  # every box at the station: the reference is the comparator
        return calibrated_fleet(seed, faults, spread_km=0.05, local_sd=0.01, local_phi=0.9, with_reference=True)
    return calibrated_fleet(seed, faults)


def _delay(config: DriftConfig, seed: int, fault: Fault, reference: bool) -> float:
    start, sites = _fleet(seed, (fault,), reference)
    finding = {f.device_id: f for f in detect_drift(sites, config)}[fault.device_id]
    if finding.flagged_at is None:
        return math.inf
    return float((finding.flagged_at - hour_after(start, ONSET_DAY)) / ONE_HOUR)


def study(config: DriftConfig, seeds: int, reference: bool) -> str:
    false = runs = 0
    drifts, steps = [], []
    for seed in range(seeds):
        _, sites = _fleet(seed, (), reference)
        findings = detect_drift(sites, config)
        false += sum(f.status == "drift" for f in findings)
        runs += len(findings)
        drifts.append(_delay(config, seed, Fault("colo-3", "drift", ONSET_DAY, 0.10), reference) / 24)
        steps.append(_delay(config, seed, Fault("colo-5", "step", ONSET_DAY, -0.3 if seed % 2 else 0.3), reference))
    box_years = runs * DAYS / 365.25
    return (
        f"{'reference' if reference else 'neighbours'} threshold={config.threshold:g}: "
        f"false flags {false} in {runs} healthy box-runs of {DAYS} days ({false / box_years:.2f} per box-year); "
        f"10 %/day drift flagged after median {np.median(drifts):.2f} d (max {max(drifts):.2f}); "
        f"30 % step after median {np.median(steps):.0f} h (90th percentile {np.percentile(steps, 90):.0f} h, "
        f"max {max(steps):.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--threshold", type=float, action="append")
    args = parser.parse_args()
    for threshold in args.threshold or [DriftConfig.threshold]:
        config = replace(DriftConfig(), threshold=threshold)
        for reference in (False, True):
            print(study(config, args.seeds, reference), flush=True)


if __name__ == "__main__":
    main()
