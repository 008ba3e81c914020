"""Extrapolating the sample's payment delta to the claims universe (difference estimator).

Stratified expansion (difference) estimator, as OIG's RAT-STATS variable appraisal computes it:
  point  = sum_h N_h * mean_h(d)
  SE     = sqrt( sum_h N_h * (N_h - n_h) * s_h^2 / n_h )          (finite population correction)
  limits = point -/+ c * SE, two-sided, 90% by default
where d is the per-claim value (delta = audited - original payment), s_h^2 the sample variance
(n_h - 1 denominator) in stratum h.

Critical value c (`distribution`):
- 'rat-stats' (default): what RAT-STATS prints. One stratum (unrestricted appraisal): Student's t
  with n - 1 degrees of freedom ("t-Value Used"). Several strata (stratified appraisal): the overall
  limits use the normal z (1.644853626951 at 90%); RAT-STATS' stratified module applies t with
  n_h - 1 df only to each stratum's own limits, which `per_stratum` reports the same way.
- 't': Student's t; with several strata, Satterthwaite's effective degrees of freedom
  (more conservative than z for small strata).
- 'normal': z throughout.
OIG states its overpayment demand as the lower limit of the 90% two-sided interval of the total
overpayment; an overpayment is a negative delta, so that figure is minus the upper limit of the
delta (`overpayment['lower_90']`). Figures are rounded half up to whole dollars, as OIG reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
from scipy import stats

Z_90 = 1.644853626951


def _dollars(value: float) -> int:
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _counts(universe_counts: int | Mapping | pd.Series | pd.DataFrame, stratum: str) -> dict:
    if isinstance(universe_counts, (int, np.integer)):
        return {None: int(universe_counts)}
    if isinstance(universe_counts, pd.DataFrame):
        count_col = "universe_count" if "universe_count" in universe_counts else universe_counts.columns[-1]
        return dict(zip(universe_counts[stratum], universe_counts[count_col].astype(int)))
    return {k: int(v) for k, v in dict(universe_counts).items()}


def estimate_total(values: pd.Series | np.ndarray, universe_counts: int | Mapping | pd.Series | pd.DataFrame,
                   strata: pd.Series | np.ndarray | None = None, *, confidence: float = 0.90,
                   distribution: str = "rat-stats", stratum: str = "stratum") -> dict:
    """Point estimate and two-sided interval of the universe total of `values`.

    `universe_counts`: N for an unstratified sample, or N_h per stratum (mapping, Series, or a frame
    with `stratum` and `universe_count` columns). Every sampled stratum needs N_h >= n_h >= 2.
    """
    if distribution not in ("rat-stats", "t", "normal"):
        raise ValueError(f"distribution must be rat-stats, t or normal, not {distribution!r}")
    values = pd.Series(np.asarray(values, dtype=float))
    if values.isna().any():
        raise ValueError("sample values contain missing amounts: price every sampled claim first")
    counts = _counts(universe_counts, stratum)
    single = set(counts) == {None}
    if strata is None and not single:
        raise ValueError("universe counts are per stratum: pass the sample's strata")
    labels = (np.full(len(values), "__all__", dtype=object) if single
              else np.asarray(strata, dtype=object))
    if not single:
        sampled = set(labels)
        unknown = sampled - set(counts)
        if unknown:
            raise ValueError(f"sampled strata without a universe count: {sorted(map(str, unknown))}")
        unsampled = [s for s in counts if s not in sampled and counts[s] > 0]
        if unsampled:
            raise ValueError(f"strata in the universe with no sampled claim: {sorted(map(str, unsampled))}")

    alpha = 1 - confidence
    rows = []
    for label, group in values.groupby(labels, sort=True):
        key = None if single else label
        n, big_n = len(group), counts[key]
        if n < 2:
            raise ValueError(f"stratum {key!r}: {n} sampled claim(s); at least 2 are needed for an interval")
        if big_n < n:
            raise ValueError(f"stratum {key!r}: universe count {big_n} is smaller than the sample ({n})")
        mean, var = float(group.mean()), float(group.var(ddof=1))
        variance_total = big_n * (big_n - n) * var / n
        t = float(stats.t.ppf(1 - alpha / 2, n - 1))
        se = variance_total ** 0.5
        rows.append({"stratum": key, "universe_count": big_n, "sample_count": n, "sample_total": float(group.sum()),
                     "mean": mean, "std_dev": var ** 0.5, "point": big_n * mean, "standard_error": se,
                     "lower": big_n * mean - t * se, "upper": big_n * mean + t * se, "t_value": t,
                     "_variance": variance_total, "_df_term": (variance_total ** 2) / (n - 1)})
    table = pd.DataFrame(rows)
    point = float(table["point"].sum())
    variance = float(table["_variance"].sum())
    se = variance ** 0.5
    several = len(table) > 1
    if distribution == "normal" or (distribution == "rat-stats" and several):
        critical, df, used = float(stats.norm.ppf(1 - alpha / 2)), None, "normal"
    elif several:  # Satterthwaite
        df_terms = float(table["_df_term"].sum())
        df = variance ** 2 / df_terms if df_terms > 0 else float(table["sample_count"].sum() - len(table))
        critical, used = float(stats.t.ppf(1 - alpha / 2, df)), "t (Satterthwaite df)"
    else:
        df = int(table["sample_count"].iloc[0] - 1)
        critical, used = float(table["t_value"].iloc[0]), "t"
    lower, upper = point - critical * se, point + critical * se
    return {
        "point": _dollars(point), "lower": _dollars(lower), "upper": _dollars(upper),
        "confidence": confidence, "distribution": used, "critical_value": critical, "degrees_of_freedom": df,
        "standard_error": se, "precision": critical * se,
        "precision_percent": (critical * se / abs(point)) if point else None,
        "universe_count": int(table["universe_count"].sum()), "sample_count": int(table["sample_count"].sum()),
        "unrounded": {"point": point, "lower": lower, "upper": upper},
        "per_stratum": table.drop(columns=["_variance", "_df_term"]),
    }


def extrapolate_delta(sample: pd.DataFrame, universe_counts: int | Mapping | pd.Series | pd.DataFrame, *,
                      value: str = "delta", stratum: str | None = None, confidence: float = 0.90,
                      distribution: str = "rat-stats") -> dict:
    """The universe total of the payment delta (audited - original) and, for a demand, of the overpayment.

    Returns {point, lower_90, upper_90} for the delta (a negative total is a net overpayment), the
    same for the overpayment (original - audited; its `lower_90` is the amount an OIG-style
    overpayment demand uses), and the estimator's details.
    """
    strata = sample[stratum] if stratum else None
    result = estimate_total(sample[value], universe_counts, strata, confidence=confidence,
                            distribution=distribution, stratum=stratum or "stratum")
    pct = round(confidence * 100)
    return {
        "point": result["point"], f"lower_{pct}": result["lower"], f"upper_{pct}": result["upper"],
        "overpayment": {"point": -result["point"], f"lower_{pct}": -result["upper"],
                        f"upper_{pct}": -result["lower"]},
        "method": "difference estimator (expansion of the per-claim delta), finite population correction",
        **{k: v for k, v in result.items() if k not in ("point", "lower", "upper")},
    }
