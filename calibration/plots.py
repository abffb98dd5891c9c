"""The fit report picture: scatter against the reference and the co-location time series.

Rendered with matplotlib's Agg canvas through the object API (no pyplot), so it works on
a headless gateway box or in CI and leaves no global figure state behind in long CLI runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from calibration.fitting import FitResult


def plot_fit(result: FitResult, path: Path | str, *, title: str = "") -> Path:
    """Write a two-panel PNG (scatter with 1:1 line; time series) and return its path."""
    aligned = result.aligned
    calibrated = result.model.apply(aligned.raw, aligned.rh)
    times = aligned.times.astype("datetime64[s]").astype(object)
    fig = Figure(figsize=(12, 5))
    FigureCanvasAgg(fig)
    scatter, series = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    top = float(np.nanmax([aligned.raw.max(), aligned.reference.max(), np.nanmax(calibrated)])) * 1.05
    scatter.scatter(aligned.reference, aligned.raw, s=6, alpha=0.4, label=f"raw (RMSE {result.before.rmse:.2f})")
    scatter.scatter(aligned.reference, calibrated, s=6, alpha=0.4, label=f"calibrated (RMSE {result.after.rmse:.2f})")
    scatter.plot([0, top], [0, top], color="black", linewidth=1, label="1:1")
    scatter.set_xlim(0, top)
    scatter.set_ylim(0, top)
    scatter.set_xlabel("reference PM2.5 (µg/m³)")
    scatter.set_ylabel("device PM2.5 (µg/m³)")
    scatter.legend(loc="upper left", fontsize=8)
    scatter.set_title(f"n={result.after.n}  R² {result.before.r2:.3f} → {result.after.r2:.3f}")
    series.plot(times, aligned.reference, color="black", linewidth=1, label="reference")
    series.plot(times, aligned.raw, linewidth=0.8, alpha=0.7, label="raw")
    series.plot(times, calibrated, linewidth=0.8, alpha=0.9, label="calibrated")
    series.set_ylabel("PM2.5 (µg/m³)")
    series.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.suptitle(title or f"{result.method}: {result.model.to_spec()}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out
