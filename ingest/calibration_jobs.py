"""Calibration jobs a bureau scripts: fit one device against a reference and store it, check the fleet for drift.

The CLI (`citysense calibrate fit|drift`) and the admin API (`/v1/admin/calibration/...`)
both call these, so a script gets the same numbers and the same JSON objects from either;
the fields are documented in docs/calibration.md. The arithmetic is `calibration` (pure);
this module reads the device's hours, stores the fitted version and shapes the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from calibration.drift import DriftConfig, DriftFinding, Site, detect_drift
from calibration.fitting import MIN_POINTS_DEFAULT, FitKind, FitResult, align, fit
from calibration.series import HourlySeries
from ingest.calibration_store import StoreError, get_device, hourly_series, insert_calibration, list_devices


@dataclass(frozen=True)
class FitRequest:
    """One device's co-location fit: the device's raw hours in [start, end) against `reference`."""

    device_id: str
    reference: HourlySeries
    reference_name: str
    start: datetime
    end: datetime
    kind: FitKind = "linear"
    robust: bool = False
    min_points: int = MIN_POINTS_DEFAULT
    save: bool = True
    valid_from: datetime | None = None


@dataclass(frozen=True)
class FitOutcome:
    """The fit, and the calibration id it was stored under (None for a dry run)."""

    request: FitRequest
    result: FitResult
    calibration_id: int | None

    @property
    def valid_from(self) -> datetime:
        return self.request.valid_from or self.request.start

    def as_json(self) -> dict[str, Any]:
        """The `calibrate fit --json` object (docs/calibration.md lists the fields)."""
        stats = self.result.fit_stats()
        return {
            "device_id": self.request.device_id,
            "stored": self.calibration_id is not None,
            "calibration_id": self.calibration_id,
            "valid_from": self.valid_from.isoformat(),
            "model": self.result.model.to_spec(),
            "method": stats["method"],
            "robust": self.request.robust,
            "reference": self.request.reference_name,
            "reference_notes": list(self.request.reference.notes),
            "n": stats["n"],
            "all": {"raw": stats["before"], "calibrated": stats["after"]},
            "kept": {"n": stats["kept"]["n"], "raw": stats["kept"]["before"], "calibrated": stats["kept"]["after"]},
            "downweighted": stats["downweighted"],
            "residual_scale": stats["residual_scale"],
            "from": stats["from"],
            "to": stats["to"],
        }


def fit_device(conn: psycopg.Connection[Any], request: FitRequest) -> FitOutcome:
    """Fit (and unless a dry run, store) one device's model; StoreError or FitError say why not."""
    info = get_device(conn, request.device_id)
    series = hourly_series(conn, request.device_id, request.start, request.end, column="raw")
    if len(series) == 0:
        raise StoreError(
            f"device {request.device_id} has no pm25 readings between "
            f"{request.start.isoformat()} and {request.end.isoformat()}"
        )
    result = fit(align(series, request.reference), request.kind, robust=request.robust, min_points=request.min_points)
    if not request.save:
        return FitOutcome(request, result, None)
    new_id = insert_calibration(
        conn,
        metric="pm25",
        model=result.model.to_spec(),
        device_id=request.device_id,
        sensor_type=info.sensor_type,
        valid_from=request.valid_from or request.start,
        fit_stats={**result.fit_stats(), "reference": request.reference_name, "robust": request.robust},
    )
    return FitOutcome(request, result, new_id)


def fleet_sites(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> list[Site]:
    """Every located air box with calibrated PM2.5 hours in [start, end)."""
    sites = []
    for info in list_devices(conn):
        if info.lat is None or info.lon is None:
            continue
        series = hourly_series(conn, info.device_id, start, end, column="value")
        if len(series):
            sites.append(Site(info.device_id, info.lat, info.lon, series))
    return sites


def check_drift(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    config: DriftConfig | None = None,
    reference: Site | None = None,
) -> list[DriftFinding]:
    """Drift findings for the fleet over [start, end), against `reference` where it stands beside a box."""
    sites = ([reference] if reference is not None else []) + fleet_sites(conn, start, end)
    return detect_drift(sites, config)

