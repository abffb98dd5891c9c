"""Agreement statistics between a sensor series and a reference: n, R², RMSE, MAE, bias.

These are the numbers bureaus compare against the US EPA sensor performance targets
(RMSE, R², slope/intercept), so they are computed on exactly the pairs the fit used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Agreement:
    """How well `estimate` matches `reference` over the pairs where both exist.

    `r2` is the coefficient of determination 1 - SS_res/SS_tot of the estimate against
    the reference (not the squared correlation), so a biased series scores lower even
    when it is perfectly correlated; `bias` is mean(estimate - reference).
    """

    n: int
    r2: float
    rmse: float
    mae: float
    bias: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready numbers (rounded to 4 decimals) for `fit_stats`."""
        return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in asdict(self).items()}


def agreement(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> Agreement:
    """Statistics over pairs where both values are finite; NaN statistics if none."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"estimate has shape {est.shape} but reference has {ref.shape}")
    ok = np.isfinite(est) & np.isfinite(ref)
    n = int(ok.sum())
    if n == 0:
        nan = float("nan")
        return Agreement(n=0, r2=nan, rmse=nan, mae=nan, bias=nan)
    residual = est[ok] - ref[ok]
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((ref[ok] - ref[ok].mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return Agreement(
        n=n,
        r2=r2,
        rmse=float(np.sqrt(np.mean(residual**2))),
        mae=float(np.mean(np.abs(residual))),
        bias=float(np.mean(residual)),
    )
