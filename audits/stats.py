"""Confidence intervals for the error rates an audit team quotes.

The Wilson score interval is used for every proportion: unlike the normal ("Wald") interval it stays
inside [0, 1] and is not degenerate at 0 or n errors, which is common for small coder cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm


def wilson_interval(errors, n, confidence: float = 0.95):
    """Two-sided Wilson score interval (no continuity correction) for `errors` out of `n`.

    Scalars give a `(low, high)` tuple of floats; numpy arrays or pandas Series give a tuple of arrays
    (Series keep their index). n = 0 gives NaN bounds: there is no rate to bound.

        p = errors / n,  z = Φ⁻¹(1 - (1 - confidence)/2)
        centre = (p + z²/2n) / (1 + z²/n)
        half   = z · sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    """
    z = float(norm.ppf(0.5 + confidence / 2.0))
    index = next((x.index for x in (errors, n) if isinstance(x, pd.Series)), None)
    scalar = np.ndim(errors) == 0 and np.ndim(n) == 0
    e, m = np.broadcast_arrays(np.asarray(errors, dtype="float64"), np.asarray(n, dtype="float64"))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = e / m
        z2 = z * z
        denom = 1.0 + z2 / m
        centre = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
    # At 0 (or n) errors the bound is exactly 0 (or 1); floating point would leave ~1e-17.
    low = np.where(e <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(e >= m, 1.0, np.clip(centre + half, 0.0, 1.0))
    low = np.where(m > 0, low, np.nan)
    high = np.where(m > 0, high, np.nan)
    if scalar:
        return float(low), float(high)
    if index is not None:
        return pd.Series(low, index=index), pd.Series(high, index=index)
    return low, high
