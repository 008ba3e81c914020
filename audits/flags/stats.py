"""The tests behind coder and facility flags: Fisher's exact test, Benjamini-Hochberg, and Spiegelhalter's
overdispersed funnel (Statistics in Medicine 2005;24:1185-1202, additive random-effects form)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logsumexp
from scipy.stats import betabinom, hypergeom, norm

WINSOR_SHARE = 0.10   # Spiegelhalter 2005: the 10% most extreme z-scores at each end are winsorised
Z_95, Z_998 = float(norm.ppf(0.975)), float(norm.ppf(0.999))


def fisher_p(x, n, y, m, alternative: str = "greater"):
    """Fisher's exact test of x/n against y/m, vectorised: with the margins fixed, under equal rates
    X ~ Hypergeometric(n + m, x + y, n). 'greater' P(X >= x), 'less' P(X <= x), 'two-sided' 2 x the
    smaller tail (capped at 1). Unlike a binomial test against y/m, it allows for the comparison
    group's own sampling error."""
    x, n, y, m = (np.asarray(v, dtype="float64") for v in (x, n, y, m))
    total, hits = n + m, x + y
    upper = np.where(x <= 0, 1.0, hypergeom.sf(x - 1, total, hits, n))
    lower = hypergeom.cdf(x, total, hits, n)
    if alternative == "greater":
        return upper
    if alternative == "less":
        return lower
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def bh_qvalues(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (monotone step-up); NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype="float64")
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    values = p[ok]
    order = np.argsort(values, kind="mergesort")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    q[ok] = out
    return q


def coder_limits(total_n, total_overpaid, n) -> dict[str, np.ndarray]:
    """Funnel limits of a coder's overpaid share at n audited claims, consistent with the coder test
    (Fisher's exact test against the rest of the audit): with the audit's totals fixed, a coder's
    overpaid count is Hypergeometric(total_n, total_overpaid, n) under no difference, so the limits are
    its 2.5/97.5% (95%) and 0.1/99.9% (99.8%) quantiles divided by n."""
    total_n, total_overpaid, n = np.broadcast_arrays(*(np.asarray(v, dtype="float64")
                                                       for v in (total_n, total_overpaid, n)))
    ok = (n > 0) & (n <= total_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: np.where(ok, hypergeom.ppf(q, total_n, total_overpaid, n) / n, np.nan)
                for name, q in (("lower_95", 0.025), ("upper_95", 0.975),
                                ("lower_998", 0.001), ("upper_998", 0.999))}


def percentile_rank(value: float, peers) -> float:
    """Percentile rank (0-100) of `value` among `peers`: share of peers lower, ties counting half."""
    peers = np.asarray(list(peers), dtype="float64")
    if len(peers) == 0:
        return float("nan")
    return float(100.0 * ((peers < value).sum() + 0.5 * (peers == value).sum()) / len(peers))


def overdispersion(num: np.ndarray, den: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of `mask` (rows: units tested; columns: peers; True = a peer of that unit): the peers'
    pooled proportion p0 and Spiegelhalter's additive between-unit variance tau2.

        p0   = sum(num) / sum(den) over the peers
        z_i  = (y_i - p0) / sqrt(p0 (1 - p0) / n_i)            y_i = num_i / den_i, n_i = den_i
        z_i winsorised at 10% / 90%: the k = floor(0.1 I) smallest set to the (k+1)-th smallest, the k
        largest to the (k+1)-th largest (Spiegelhalter 2005: "the 10% most extreme z-scores"; with fewer
        than 10 peers none is changed)
        phi  = mean(z_i^2);  w_i = n_i / (p0 (1 - p0))
        tau2 = max(0, (I phi - (I - 1)) / (sum w - sum w^2 / sum w))     (I = number of peers)

    var_p0 = p0 (1 - p0) / N + tau2 sum(n_i^2) / N^2 (N = sum n_i): the sampling variance of the pooled rate
    itself under the same model, which matters when the complete peers are few.
    tau2 is NaN with fewer than two peers or p0 at 0 or 1 (no test)."""
    if mask.shape[1] == 0:
        nan = np.full(mask.shape[0], np.nan)
        return {"p0": nan, "tau2": nan, "var_p0": nan}
    num, den = np.broadcast_to(num, mask.shape).astype("float64"), np.broadcast_to(den, mask.shape).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # rows without peers
        peers = mask.sum(axis=1)
        p0 = np.where(mask, num, 0).sum(axis=1) / np.where(mask, den, 0).sum(axis=1)
        var1 = (p0 * (1 - p0))[:, None]
        z = np.where(mask, (num / den - p0[:, None]) / np.sqrt(var1 / den), np.nan)
        ordered = np.sort(z, axis=1)                     # NaN (not a peer) sorts last
        k = np.floor(WINSOR_SHARE * peers).astype(int)
        rows = np.arange(len(peers))
        lo = ordered[rows, np.minimum(k, ordered.shape[1] - 1)][:, None]
        hi = ordered[rows, np.clip(peers - 1 - k, 0, ordered.shape[1] - 1)][:, None]
        phi = np.nanmean(np.clip(z, lo, hi) ** 2, axis=1)
        w = np.where(mask, den / var1, 0.0)
        sw, sw2 = w.sum(axis=1), (w ** 2).sum(axis=1)
        tau2 = np.maximum(0.0, (peers * phi - (peers - 1)) / (sw - sw2 / sw))
        total = np.where(mask, den, 0).sum(axis=1)
        var_p0 = p0 * (1 - p0) / total + tau2 * (np.where(mask, den, 0) ** 2).sum(axis=1) / total ** 2
    ok = (peers >= 2) & (p0 > 0) & (p0 < 1)
    return {"p0": np.where(peers > 0, p0, np.nan), "tau2": np.where(ok, tau2, np.nan),
            "var_p0": np.where(ok, var_p0, np.nan)}


def overdispersed_z(num, den, p0, tau2) -> tuple[np.ndarray, np.ndarray]:
    """z = (y - p0) / sqrt(p0 (1 - p0) / n) and z_D = (y - p0) / sqrt(p0 (1 - p0) / n + tau2)."""
    num, den, p0, tau2 = (np.asarray(v, dtype="float64") for v in (num, den, p0, tau2))
    with np.errstate(divide="ignore", invalid="ignore"):
        y, var = num / den, p0 * (1 - p0) / den
        return (y - p0) / np.sqrt(var), (y - p0) / np.sqrt(var + tau2)


# Below this, an upper tail is summed from its own terms (`betabinom_upper_tail`).
EXACT_TAIL_BELOW = 1e-6


def betabinom_upper_tail(x, n, a, b) -> np.ndarray:
    """P(X >= x), X ~ beta-binomial(n, a, b). scipy's `sf` is 1 - cdf: its absolute error, ~1e-11 at a
    few thousand trials, swamps a small tail (on the 1M benchmark a true 3.4e-18 came out as 1.5e-11 or
    3.7e-12 as tau2's last bit moved). Tails below EXACT_TAIL_BELOW are summed from their own terms, in log space, for the
    few rows that have one. (The lower tail, `cdf`, sums its own terms already.)"""
    x, n, a, b = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (x, n, a, b)))
    p = np.array(betabinom.sf(x - 1, n, a, b), dtype="float64", ndmin=1)
    small = np.flatnonzero(np.isfinite(p.ravel()) & (p.ravel() < EXACT_TAIL_BELOW) & (x.ravel() > 0))
    for i in small:   # per extreme row: each sums its own range of counts
        k = np.arange(int(x.flat[i]), int(n.flat[i]) + 1)
        p.flat[i] = np.exp(logsumexp(betabinom.logpmf(k, n.flat[i], a.flat[i], b.flat[i]))) if len(k) else 0.0
    return p.reshape(x.shape)


def overdispersed_p(num, den, p0, tau2, var_p0, direction) -> np.ndarray:
    """p of the facility's count in the area's direction ('high' P(X >= x), 'low' P(X <= x), 'both' twice the
    smaller tail), X ~ beta-binomial(n) with mean p0 and extra variance tau2 + var_p0:

        rho = (tau2 + var_p0) / (p0 (1 - p0)),  a = p0 (1/rho - 1),  b = (1 - p0) (1/rho - 1)
        Var(X / n) = p0 (1 - p0) / n + (tau2 + var_p0) (n - 1) / n

    The additive random-effects model of z_D with binomial counts (a facility's rate drawn around p0 with
    variance tau2) plus the pooled rate's own error: the exact tail rather than the normal one of z_D,
    whose tail is far too thin for a numerator of 11-40 at a rate of 5-20% (demo-size audits)."""
    num, den, p0, tau2, var_p0 = (np.asarray(v, dtype="float64") for v in (num, den, p0, tau2, var_p0))
    direction = np.asarray(direction, dtype=object)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip((tau2 + var_p0) / (p0 * (1 - p0)), 1e-12, 1 - 1e-9)
        scale = 1 / rho - 1
        a, b = p0 * scale, (1 - p0) * scale
        upper = np.where(num <= 0, 1.0, betabinom_upper_tail(num, den, a, b))
        lower = betabinom.cdf(num, den, a, b)
    return np.select([direction == "high", direction == "low"], [upper, lower],
                     np.minimum(1.0, 2.0 * np.minimum(upper, lower)))


def overdispersed_limits(p0, tau2, n) -> dict[str, np.ndarray]:
    """The overdispersed funnel at n: p0 -/+ z sqrt(p0 (1 - p0) / n + tau2), z = 1.96 (95%) and 3.09
    (99.8%), kept within [0, 1]."""
    p0, tau2, n = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (p0, tau2, n)))
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(p0 * (1 - p0) / n + tau2)
    return {name: np.clip(p0 + sign * z * sd, 0.0, 1.0)
            for name, sign, z in (("lower_95", -1, Z_95), ("upper_95", 1, Z_95),
                                  ("lower_998", -1, Z_998), ("upper_998", 1, Z_998))}
