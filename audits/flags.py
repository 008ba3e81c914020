"""Upcoding flags: claim, coder and facility patterns, each with the evidence a compliance officer follows.

`build_flags(con, peers=None)` (re)creates five tables from `claims`, `reviews`, `claim_codes`,
`code_diffs`, `claim_regroup` and `universe` (see the contract in the issue-5 schema note):
`upcoding_flags`, `upcoding_rules`, `coder_funnel`, `facility_target_areas`, `short_stay_rates`.

Claim rules (audited claims; exposure = the claim's overpaid magnitude max(0, -delta), 0 when unpriced):
- `severity_code_removed`: a CC/MCC that set the original DRG's severity level (the MCC codes of a
  "WITH MCC" DRG, the CC codes of a "WITH CC" DRG, both for "WITH CC/MCC") was removed on audit
  (code_diffs secondary `deleted`, or the original side of a `specificity` pair) and the claim
  regrouped to a lighter DRG of the same family (same MDC and `drg_family` title, lower weight).
- `high_risk_mcc_removed`: a code on the watchlist (`audits/data/high_risk_mccs.csv`, code prefixes)
  deleted on audit, whether or not the DRG changed. A specificity pair counts only when it lowered the
  code's CC/MCC level as the grouper used it (J96.01 -> J96.91 counts; N17.9 -> N17.0 does not).
- `heavier_drg_same_principal`: original DRG weight > audited weight, principal diagnosis result `match`.
  Severity of a claim flag, by exposure: high >= $5,000, medium >= $1,000, low below (including $0).

Coder rule `coder_overpaid_share`: for a coder with >= 11 priced audited claims, x overpaid of n, against
p0 = the overpaid share of the rest of the audit (every other priced audited claim); exact one-sided
binomial p = P(X >= x | n, p0) (= scipy.stats.binomtest(x, n, p0, alternative='greater')), Benjamini-
Hochberg q across the tested coders, flagged at q < 0.05. Claims whose payment could not be computed
(direction `not_priced`) are in neither x, n nor p0. Funnel limits (`coder_funnel`) are exact binomial
quantiles at p0 (scipy binom.ppf at 2.5/97.5% and 0.1/99.9%, divided by n; no interpolation):
`funnel_limits(p0, n)` draws the same curves over a grid. Severity: high q < 0.001, medium q < 0.01, low.

Facility rules (claims universe: `universe` when it has rows, else `claims`; billed DRGs; no audit):
- Target areas from `audits/data/target_areas.csv` (plus one `mcc_share_<drgs>` area per medical
  family with a WITH MCC / WITH CC / WITHOUT CC/MCC split, generated from Table 5 titles). Percent =
  100 x numerator / denominator. Peer group: the other facilities of the universe, or the `peers`
  DataFrame (provider_id, drg, discharges; CMS "Medicare Inpatient Hospitals - by Provider and
  Service" column names Rndrng_Prvdr_CCN, DRG_Cd, Tot_Dschrgs are accepted too). Septicemia follows
  PEPPER's definition: 870-872 over 870-872 plus the DRGs such stays are often reassigned to (193-195,
  207-208, 689-690), not over all medical DRGs (sources in audits/data/TARGET_AREAS.md).
- Percentile rank of a facility = 100 x (peers with a lower percent + half the peers with an equal
  percent) / peers, over peers with a denominator >= 11 (the facility itself excluded). peer_p20 and
  peer_p80 are the peers' 20th/80th percentiles (linear interpolation). Outlier: `high` at a rank >= 80
  (areas with direction high or both), `low` at a rank <= 20 (direction low or both, the coding targets).
  Rows with a numerator or denominator under 11 are kept, `suppressed`, never outliers.
- A percentile alone is not evidence: among five facilities one is always at the 100th percentile. A
  facility flag (`target_area_outlier`) needs the PEPPER-style outlier AND Fisher's exact test of the
  facility's numerator/denominator against the pooled counts of its middle peers (the peers between
  their 20th and 80th percentiles, all peers when that middle is empty; one-sided in the area's
  direction, two-sided = 2 x the smaller tail for `both`), with Benjamini-Hochberg q < 0.05 across every
  facility test of the run (target areas and short stays together). Fisher rather than a binomial test
  against the peers' rate: with a handful of peer facilities their rate carries sampling error too (a
  binomial test flagged a facility in ~1 null demo seed of 3). Middle peers: one real outlier among
  five facilities (the planted F003) otherwise inflates the benchmark and makes ordinary facilities
  look like low outliers. `facility_target_areas.outlier` keeps the pure PEPPER (percentile) view.
- CMS suppression bias (peers file): cells under 11 discharges are missing from the CMS file, so peer
  numerators and denominators are undercounted, most for small hospitals and rare DRGs. Handling:
  (1) like-for-like: when every peer cell is >= 11 (a suppressed file), the facility's own DRG cells
  under 11 are dropped too before its percent is computed, so both sides carry the same bias;
  (2) peers are used only where their reported denominator is >= 11; (3) an area where more than half
  of those peers report no numerator cell at all (0 or suppressed: unknowable) is marked: every row of
  it `suppressed`, never flagged. A peers file with cells under 11 is taken as complete (no (1)).
- `short_stay_highest_severity` (OIG OEI-02-18-00380): highest-severity stays (billed DRG whose Table 5
  title ends "WITH MCC..." in a family of >= 2 members) with a length of stay (discharge - admit days)
  under 0.8 x the DRG's geometric mean LOS (Table 5 of the discharge's fiscal year). Rates by facility
  and coder in `short_stay_rates`, plus, where known (audited claims), the share of the audited
  highest-severity stays (regrouped original DRG) whose severity rests on a single MCC. A facility is
  flagged when not suppressed (stays and short stays >= 11), at a percentile rank >= 80 among the
  facilities with >= 11 highest-severity stays, and its short stays are significant against its middle
  peers pooled (one-sided Fisher exact test, the shared BH q < 0.05).
Facility flags: exposure NULL (no audit), severity high q < 0.001, medium q < 0.01, low otherwise.

flag_id: '<level>:<rule>:<entity>' (+ ':<target_area>' for target areas). Rates in `upcoding_flags`
(observed, expected) are proportions 0-1 for coder and facility rules and payments ($) for claim rules
(observed = original payment, expected = audited payment); `percent`, `peer_*` and percentile ranks are 0-100.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import binom, hypergeom

from audits.codes import fiscal_year_sql, normalise_code
from audits.weights import drg_family, load_weights

MIN_COUNT = 11                 # PEPPER / CMS small-cell rule
MIN_CODER_CLAIMS = 11
# Two families of tests flag entities: coders (BH across coders) and facilities (BH across facility
# tests). Each is run at ALPHA / 2 (a Bonferroni split) so that, in an audit where nothing is wrong,
# the chance of any coder or facility flag stays near ALPHA: at ALPHA each, 5 of 60 clean demo seeds
# (5,000 claims / 800 audited) had one; at ALPHA / 2 each, 1 of 60.
ALPHA = 0.05
FAMILY_ALPHA = ALPHA / 2
HIGH_PERCENTILE, LOW_PERCENTILE = 80.0, 20.0
SHORT_STAY_FACTOR = 0.8        # OIG OEI-02-18-00380: LOS < 0.8 x geometric mean LOS
HIGH_EXPOSURE, MEDIUM_EXPOSURE = 5000.0, 1000.0
HIGH_Q, MEDIUM_Q = 0.001, 0.01
MOSTLY_SUPPRESSED = 0.5        # share of peers with no reported numerator cell that marks an area

FLAG_COLUMNS = {
    "flag_id": "VARCHAR", "level": "VARCHAR", "entity": "VARCHAR", "rule": "VARCHAR", "observed": "DOUBLE",
    "expected": "DOUBLE", "n": "BIGINT", "statistic": "DOUBLE", "p_value": "DOUBLE", "q_value": "DOUBLE",
    "exposure": "DOUBLE", "severity": "VARCHAR", "evidence": "VARCHAR", "description": "VARCHAR",
}
FUNNEL_COLUMNS = {
    "coder_id": "VARCHAR", "n": "BIGINT", "overpaid": "BIGINT", "rate": "DOUBLE", "expected": "DOUBLE",
    "lower_95": "DOUBLE", "upper_95": "DOUBLE", "lower_998": "DOUBLE", "upper_998": "DOUBLE",
    "p_value": "DOUBLE", "q_value": "DOUBLE", "flagged": "BOOLEAN",
}
TARGET_COLUMNS = {
    "facility_id": "VARCHAR", "target_area": "VARCHAR", "numerator": "BIGINT", "denominator": "BIGINT",
    "percent": "DOUBLE", "peer_percentile": "DOUBLE", "peer_p20": "DOUBLE", "peer_p80": "DOUBLE",
    "peers": "BIGINT", "direction": "VARCHAR", "outlier": "VARCHAR", "suppressed": "BOOLEAN",
}
SHORT_STAY_COLUMNS = {
    "level": "VARCHAR", "entity": "VARCHAR", "highest_severity_stays": "BIGINT", "short_stays": "BIGINT",
    "short_stay_rate": "DOUBLE", "single_mcc_stays": "BIGINT", "single_mcc_rate": "DOUBLE",
    "suppressed": "BOOLEAN",
}
RULE_COLUMNS = {"rule": "VARCHAR", "level": "VARCHAR", "description": "VARCHAR", "threshold": "VARCHAR",
                "source": "VARCHAR"}

_CLAIM_SEVERITY = f">= ${HIGH_EXPOSURE:,.0f} high, >= ${MEDIUM_EXPOSURE:,.0f} medium, else low"
_Q_SEVERITY = f"q < {HIGH_Q} high, q < {MEDIUM_Q} medium, else low"
RULES = pd.DataFrame([
    ("severity_code_removed", "claim",
     "A CC/MCC that set the original DRG's severity level was removed on audit and the claim regrouped to a "
     "lighter DRG of the same family. observed/expected = original/audited payment.",
     f"any audited claim; severity by overpaid amount: {_CLAIM_SEVERITY}",
     "DESIGN.md 'Upcoding flags'; MS-DRG severity splits of CMS IPPS Table 5"),
    ("high_risk_mcc_removed", "claim",
     "A code on the high-risk watchlist (audits/data/high_risk_mccs.csv) was deleted on audit, whether or not "
     "the DRG changed (a specificity change counts when it lowered the code's CC/MCC level).",
     f"any audited claim; severity by overpaid amount: {_CLAIM_SEVERITY}",
     "DESIGN.md 'Upcoding flags'; OIG A-03-17-00010 (E43); issue 5 watchlist"),
    ("heavier_drg_same_principal", "claim",
     "The original DRG weighs more than the audited DRG while the principal diagnosis is unchanged.",
     f"original weight > audited weight, principal result match; severity: {_CLAIM_SEVERITY}",
     "DESIGN.md 'Upcoding flags'"),
    ("coder_overpaid_share", "coder",
     "Share of the coder's audited claims that were overpaid, against the rest of the audit. observed = the "
     "coder's overpaid share, expected = the rest of the audit's share, statistic = z score.",
     f"n >= {MIN_CODER_CLAIMS}; exact one-sided binomial P(X >= x | n, p0); Benjamini-Hochberg "
     f"q < {FAMILY_ALPHA} across coders; severity {_Q_SEVERITY}",
     "DESIGN.md 'Upcoding flags' (funnel plot with control limits)"),
    ("target_area_outlier", "facility",
     "PEPPER-style target area: the facility's percent of billed DRGs against its peers. observed = facility "
     "rate, expected = pooled rate of the middle peers (20th-80th percentile), n = denominator, statistic = "
     "percentile rank among peers (0-100).",
     f"percentile rank >= {HIGH_PERCENTILE:.0f} (high) or <= {LOW_PERCENTILE:.0f} (low, coding targets); "
     f"numerator and denominator >= {MIN_COUNT}; Fisher exact test against the middle peers pooled, "
     f"Benjamini-Hochberg q < {FAMILY_ALPHA} across facility tests; severity {_Q_SEVERITY}",
     "CMS ST PEPPER target areas; audits/data/target_areas.csv (see TARGET_AREAS.md)"),
    ("short_stay_highest_severity", "facility",
     "Highest-severity (WITH MCC) stays shorter than 0.8 x the DRG's geometric mean length of stay. "
     "observed = facility short-stay rate, expected = pooled rate of the middle peer facilities, statistic = "
     "percentile rank (0-100).",
     f"stays and short stays >= {MIN_COUNT}; percentile rank >= {HIGH_PERCENTILE:.0f} among facilities; "
     f"one-sided Fisher exact test, Benjamini-Hochberg q < {FAMILY_ALPHA} across facility tests; "
     f"severity {_Q_SEVERITY}",
     "OIG OEI-02-18-00380; CMS IPPS Table 5 geometric mean LOS"),
], columns=list(RULE_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

def binomial_p_greater(x, n, p0):
    """Exact one-sided P(X >= x) for X ~ Binomial(n, p0): binomtest(..., alternative='greater')."""
    x, n, p0 = (np.asarray(v, dtype="float64") for v in (x, n, p0))
    return np.where(x <= 0, 1.0, binom.sf(x - 1, n, p0))


def fisher_p(x, n, y, m, alternative: str = "greater"):
    """Fisher's exact test of x/n (the facility) against y/m (its peers pooled), vectorised: under
    equal rates X ~ Hypergeometric(n + m, x + y, n). 'greater' P(X >= x), 'less' P(X <= x),
    'two-sided' 2 x the smaller tail (capped at 1). Unlike a binomial test against the peers' rate,
    it allows for the peers' own sampling error, which matters when the peers are only a few facilities."""
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


def funnel_limits(p0, n) -> dict[str, np.ndarray]:
    """Funnel-plot control limits at n for an expected rate p0: exact binomial quantiles / n
    (95%: 2.5th and 97.5th; 99.8%: 0.1th and 99.9th percentiles of Binomial(n, p0))."""
    p0, n = np.broadcast_arrays(np.asarray(p0, dtype="float64"), np.asarray(n, dtype="float64"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {name: np.where(n > 0, binom.ppf(q, n, p0) / n, np.nan)
               for name, q in (("lower_95", 0.025), ("upper_95", 0.975),
                               ("lower_998", 0.001), ("upper_998", 0.999))}
    return out


def percentile_rank(value: float, peers) -> float:
    """Percentile rank (0-100) of `value` among `peers`: share of peers lower, ties counting half."""
    peers = np.asarray(list(peers), dtype="float64")
    if len(peers) == 0:
        return float("nan")
    return float(100.0 * ((peers < value).sum() + 0.5 * (peers == value).sum()) / len(peers))


# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------

def _read_config_csv(path, default_name: str) -> pd.DataFrame:
    if path is None:
        text = resources.files("audits").joinpath("data", default_name).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)


def load_watchlist(path=None) -> pd.DataFrame:
    """The high-risk code watchlist: pattern (normalised code prefix), description, source."""
    frame = _read_config_csv(path, "high_risk_mccs.csv")
    missing = {"pattern", "description"} - set(frame.columns)
    if missing:
        raise ValueError(f"watchlist {path or 'high_risk_mccs.csv'} lacks column(s) {sorted(missing)}")
    frame["pattern"] = frame["pattern"].map(normalise_code)
    frame = frame[frame["pattern"].notna() & (frame["pattern"] != "")]
    if "source" not in frame.columns:
        frame["source"] = ""
    return frame[["pattern", "description", "source"]].drop_duplicates("pattern").reset_index(drop=True)


def drg_reference(weights: pd.DataFrame) -> pd.DataFrame:
    """Per fiscal year and DRG: family (title without its severity split), its severity level
    (MCC, CC/MCC, CC, NONE or NULL when unsplit), family size, and whether it is a highest-severity DRG."""
    ref = weights[["fiscal_year", "drg", "title", "mdc", "type", "weight", "gmlos"]].copy()
    ref["title"] = ref["title"].astype("string").fillna("")
    ref["family"] = ref["title"].map(drg_family)
    suffix = pd.Series([t[len(f):].strip() for t, f in zip(ref["title"], ref["family"])], index=ref.index)
    ref["level"] = np.select(
        [suffix.str.startswith("WITH MCC"), suffix.str.startswith("WITH CC/MCC"),
         suffix.str.startswith("WITH CC"), suffix.str.startswith("WITHOUT")],
        ["MCC", "CC/MCC", "CC", "NONE"], default=None)
    ref["mdc"] = ref["mdc"].astype("string").fillna("")
    ref["family_size"] = ref.groupby(["fiscal_year", "mdc", "family"])["drg"].transform("size")
    ref["highest"] = (ref["level"] == "MCC") & (ref["family_size"] >= 2)
    ref["suffix"] = suffix
    return ref


def _expand_drgs(text: str, ref: pd.DataFrame) -> list[str]:
    out: list[str] = []
    for token in str(text).split():
        upper = token.upper()
        if upper in ("MED", "SURG"):
            out += ref.loc[ref["type"] == upper, "drg"].tolist()
        elif re.fullmatch(r"\d{1,3}-\d{1,3}", token):
            lo, hi = (int(v) for v in token.split("-"))
            out += [f"{d:03d}" for d in range(lo, hi + 1)]
        elif re.fullmatch(r"\d{1,3}", token):
            out.append(f"{int(token):03d}")
        else:
            raise ValueError(f"target area DRG list: cannot read {token!r} (numbers, ranges a-b, MED, SURG)")
    return sorted(set(out))


def family_areas(ref: pd.DataFrame) -> pd.DataFrame:
    """One area per medical family split WITH MCC / WITH CC / WITHOUT CC/MCC: the MCC member over all three."""
    med = ref[(ref["type"] == "MED") & (ref["family_size"] == 3)]
    grouped = med.groupby(["mdc", "family"]).agg(
        drgs=("drg", lambda s: sorted(s)), levels=("level", lambda s: "|".join(sorted(s.astype(str)))))
    grouped = grouped[grouped["levels"] == "CC|MCC|NONE"].reset_index()
    mcc = med[med["level"] == "MCC"][["mdc", "family", "drg"]].rename(columns={"drg": "mcc_drg"})
    grouped = grouped.merge(mcc, on=["mdc", "family"])
    return pd.DataFrame({
        "target_area": ["mcc_share_" + d[0] + "_" + d[-1] for d in grouped["drgs"]],
        "numerator": [[m] for m in grouped["mcc_drg"]],
        "denominator": grouped["drgs"].tolist(),
        "family": grouped["family"].str.lower().tolist(),
    })


def load_target_areas(path=None, weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """Target areas: target_area, numerator (DRG list), denominator (DRG list), direction, description,
    source. A row `family:with_mcc` / `family:all` expands into one `mcc_share_<first>_<last>` area per
    medical family of Table 5 (`weights`, default the packaged FY2026) with a three-way severity split."""
    frame = _read_config_csv(path, "target_areas.csv")
    required = {"target_area", "numerator_drgs", "denominator_drgs", "direction"}
    missing = required - set(frame.columns)
    if missing:
        raise ValueError(f"target areas {path or 'target_areas.csv'} lack column(s) {sorted(missing)}")
    for col in ("description", "source"):
        if col not in frame.columns:
            frame[col] = ""
    bad = sorted(set(frame["direction"]) - {"high", "low", "both"})
    if bad:
        raise ValueError(f"target area direction must be high, low or both, not {bad}")
    ref = drg_reference(weights if weights is not None else load_weights([2026]))
    ref = ref[ref["fiscal_year"] == ref["fiscal_year"].max()]
    rows = []
    for rec in frame.to_dict("records"):
        if rec["numerator_drgs"].strip().lower().startswith("family:"):
            fam = family_areas(ref)
            for area in fam.to_dict("records"):
                rows.append({"target_area": area["target_area"], "numerator": area["numerator"],
                             "denominator": area["denominator"], "direction": rec["direction"],
                             "description": f"{rec['description']}: {area['family']}",
                             "source": rec["source"]})
            continue
        rows.append({"target_area": rec["target_area"],
                     "numerator": _expand_drgs(rec["numerator_drgs"], ref),
                     "denominator": _expand_drgs(rec["denominator_drgs"], ref),
                     "direction": rec["direction"], "description": rec["description"], "source": rec["source"]})
    out = pd.DataFrame(rows, columns=["target_area", "numerator", "denominator", "direction", "description",
                                      "source"])
    dup = out["target_area"][out["target_area"].duplicated()].tolist()
    if dup:
        raise ValueError(f"duplicate target areas: {dup}")
    return out


def normalise_peers(peers: pd.DataFrame) -> pd.DataFrame:
    """provider_id, drg (3 digits), discharges from our column names or CMS's (Rndrng_Prvdr_CCN, DRG_Cd,
    Tot_Dschrgs)."""
    rename = {"Rndrng_Prvdr_CCN": "provider_id", "DRG_Cd": "drg", "Tot_Dschrgs": "discharges"}
    frame = peers.rename(columns={k: v for k, v in rename.items() if k in peers.columns})
    missing = {"provider_id", "drg", "discharges"} - set(frame.columns)
    if missing:
        raise ValueError(f"peers lacks column(s) {sorted(missing)} (provider_id, drg, discharges)")
    drg = frame["drg"].astype("string").str.strip().str.extract(r"^(\d{1,3})", expand=False)
    out = pd.DataFrame({
        "provider_id": frame["provider_id"].astype("string").str.strip(),
        "drg": drg.str.zfill(3),
        "discharges": pd.to_numeric(frame["discharges"], errors="coerce"),
    })
    out = out.dropna()
    out = out[out["discharges"] > 0]
    return out.groupby(["provider_id", "drg"], as_index=False)["discharges"].sum().astype(
        {"discharges": "int64"})


# ---------------------------------------------------------------------------------------------
# Helpers over the connection
# ---------------------------------------------------------------------------------------------

def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def _universe_source(con: duckdb.DuckDBPyConnection) -> str:
    if _table_exists(con, "universe") and con.execute("SELECT count(*) FROM universe").fetchall()[0][0] > 0:
        return "universe"
    return "claims"


def _write(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame | None, columns: dict[str, str]
           ) -> None:
    select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns.items())
    if frame is None or frame.empty:
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items())
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {empty} WHERE false")
        return
    con.register("_flags_frame", frame[list(columns)])
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {select} FROM _flags_frame")
    finally:
        con.unregister("_flags_frame")


def _temp(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    con.register("_flags_tmp", frame)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _flags_tmp")
    finally:
        con.unregister("_flags_tmp")


def _weights_for(con: duckdb.DuckDBPyConnection, source: str, weights_dir) -> pd.DataFrame:
    years = {int(y) for (y,) in con.execute(
        f"SELECT DISTINCT {fiscal_year_sql('discharge_date')} FROM {source} WHERE discharge_date IS NOT NULL"
    ).fetchall()}
    years |= {int(y) for (y,) in con.execute(
        "SELECT DISTINCT fiscal_year FROM claim_regroup WHERE fiscal_year IS NOT NULL").fetchall()}
    return load_weights(sorted(years) or [2026], extra_dir=weights_dir)


# ---------------------------------------------------------------------------------------------
# Claim rules
# ---------------------------------------------------------------------------------------------

_CLAIM_BASE_SQL = """
CREATE OR REPLACE TEMP TABLE _flags_claim_base AS
SELECT r.claim_id, r.original_drg, r.audited_drg, r.original_weight, r.audited_weight,
       r.original_payment, r.audited_payment, r.delta, r.change_drivers, r.original_principal_dx,
       list_filter(string_split(coalesce(r.original_mcc_codes, ''), ' '), lambda c: c <> '') AS o_mcc,
       list_filter(string_split(coalesce(r.original_cc_codes, ''), ' '), lambda c: c <> '') AS o_cc,
       list_filter(string_split(coalesce(r.audited_mcc_codes, ''), ' '), lambda c: c <> '') AS a_mcc,
       list_filter(string_split(coalesce(r.audited_cc_codes, ''), ' '), lambda c: c <> '') AS a_cc,
       greatest(0.0, -coalesce(r.delta, 0.0)) AS exposure,
       o.family AS o_family, o.mdc AS o_mdc, o.level AS o_level, o.title AS o_title,
       a.family AS a_family, a.mdc AS a_mdc, a.title AS a_title
FROM claim_regroup r
LEFT JOIN _flags_drg_ref o ON o.fiscal_year = r.fiscal_year AND o.drg = r.original_drg
LEFT JOIN _flags_drg_ref a ON a.fiscal_year = r.fiscal_year AND a.drg = r.audited_drg;

CREATE OR REPLACE TEMP TABLE _flags_removed AS
SELECT d.claim_id, d.original_code AS code, d.audited_code, d.result
FROM code_diffs d SEMI JOIN _flags_claim_base b ON b.claim_id = d.claim_id
WHERE d.kind = 'dx' AND d.role = 'secondary' AND d.result IN ('deleted', 'specificity')
  AND d.original_code IS NOT NULL;
"""

_SEVERITY_SQL = f"""CASE WHEN exposure >= {HIGH_EXPOSURE} THEN 'high'
                         WHEN exposure >= {MEDIUM_EXPOSURE} THEN 'medium' ELSE 'low' END"""

_DRG_MOVE = """CASE WHEN b.original_drg IS DISTINCT FROM b.audited_drg
                    THEN format('DRG {} ({}) -> {} ({})', coalesce(b.original_drg, '?'), coalesce(b.o_title, '?'),
                                coalesce(b.audited_drg, '?'), coalesce(b.a_title, '?'))
                    ELSE format('DRG {} unchanged', coalesce(b.original_drg, '?')) END"""

_CLAIM_FLAGS_SQL = f"""
WITH severity_removed AS (
    SELECT b.claim_id, list_sort(list_distinct(list(x.code))) AS codes, any_value(b.o_level) AS lvl
    FROM _flags_claim_base b JOIN _flags_removed x USING (claim_id)
    WHERE b.o_family IS NOT NULL AND b.o_family = b.a_family AND b.o_mdc = b.a_mdc
      AND b.audited_weight < b.original_weight
      AND ((b.o_level IN ('MCC', 'CC/MCC') AND list_contains(b.o_mcc, x.code))
        OR (b.o_level IN ('CC', 'CC/MCC') AND list_contains(b.o_cc, x.code)))
    GROUP BY b.claim_id
),
watch_hits AS (
    SELECT x.claim_id, x.code, x.audited_code, x.result, arg_max(w.description, length(w.pattern)) AS what
    FROM _flags_removed x
    JOIN _flags_watchlist w ON starts_with(x.code, w.pattern)
    JOIN _flags_claim_base b USING (claim_id)
    WHERE x.result = 'deleted'
       OR (CASE WHEN list_contains(b.o_mcc, x.code) THEN 2 WHEN list_contains(b.o_cc, x.code) THEN 1 ELSE 0 END)
        > (CASE WHEN list_contains(b.a_mcc, x.audited_code) THEN 2
                WHEN list_contains(b.a_cc, x.audited_code) THEN 1 ELSE 0 END)
    GROUP BY ALL
),
watch AS (
    SELECT claim_id, list_sort(list_distinct(list(code))) AS codes,
           string_agg(code || ' ' || what || CASE WHEN result = 'deleted' THEN ' (deleted)'
                      ELSE ' (replaced by ' || coalesce(audited_code, '?') || ')' END, '; ' ORDER BY code) AS what
    FROM watch_hits GROUP BY claim_id
),
heavier AS (
    SELECT b.claim_id FROM _flags_claim_base b
    WHERE b.original_weight > b.audited_weight
      AND EXISTS (SELECT 1 FROM code_diffs d WHERE d.claim_id = b.claim_id AND d.kind = 'dx'
                  AND d.role = 'principal' AND d.result = 'match')
),
removed_any AS (
    SELECT claim_id, list_sort(list_distinct(list(code))) AS codes FROM _flags_removed GROUP BY claim_id
),
flags AS (
    SELECT 'severity_code_removed' AS rule, b.*, s.codes,
           format('Audit removed the {{}} {{}} that set the severity of the original DRG: {{}}; overpaid ${{:,.2f}}.',
                  CASE s.lvl WHEN 'MCC' THEN 'MCC' WHEN 'CC' THEN 'CC' ELSE 'CC/MCC' END,
                  array_to_string(s.codes, ', '), {_DRG_MOVE}, b.exposure) AS description,
           format('{{}}; removed {{}}', {_DRG_MOVE}, array_to_string(s.codes, ', ')) AS detail
    FROM severity_removed s JOIN _flags_claim_base b USING (claim_id)
    UNION ALL BY NAME
    SELECT 'high_risk_mcc_removed' AS rule, b.*, w.codes,
           format('High-risk code removed on audit: {{}}; {{}}; overpaid ${{:,.2f}}.', w.what, {_DRG_MOVE},
                  b.exposure) AS description,
           format('{{}}; {{}}', w.what, {_DRG_MOVE}) AS detail
    FROM watch w JOIN _flags_claim_base b USING (claim_id)
    UNION ALL BY NAME
    SELECT 'heavier_drg_same_principal' AS rule, b.*, coalesce(r.codes, []::VARCHAR[]) AS codes,
           format('Original DRG {{}} (weight {{:.4f}}) is heavier than the audited DRG {{}} (weight {{:.4f}}) with the '
                  'same principal diagnosis {{}}; overpaid ${{:,.2f}}.', b.original_drg, b.original_weight,
                  b.audited_drg, b.audited_weight, coalesce(b.original_principal_dx, '?'), b.exposure)
               AS description,
           format('{{}}; drivers: {{}}', {_DRG_MOVE}, coalesce(nullif(b.change_drivers, ''), 'none recorded')) AS detail
    FROM heavier h JOIN _flags_claim_base b USING (claim_id)
    LEFT JOIN removed_any r USING (claim_id)
)
SELECT 'claim:' || rule || ':' || claim_id AS flag_id, 'claim' AS level, claim_id AS entity, rule,
       original_payment AS observed, audited_payment AS expected, 1 AS n,
       CAST(NULL AS DOUBLE) AS statistic, CAST(NULL AS DOUBLE) AS p_value, CAST(NULL AS DOUBLE) AS q_value,
       exposure, {_SEVERITY_SQL} AS severity,
       json_object('claims', [claim_id], 'codes', codes, 'detail', detail)::VARCHAR AS evidence, description
FROM flags
ORDER BY rule, claim_id
"""


def claim_flags(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The three claim rules over `claim_regroup` and `code_diffs` (needs the temp tables _flags_drg_ref
    and _flags_watchlist; `build_flags` makes them)."""
    con.execute(_CLAIM_BASE_SQL)
    return con.execute(_CLAIM_FLAGS_SQL).df()


# ---------------------------------------------------------------------------------------------
# Coder rule
# ---------------------------------------------------------------------------------------------

def coder_funnel(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per coder with priced audited claims: overpaid share, rest-of-audit share, limits, p, q."""
    counts = con.execute("""
        SELECT coder_id, count(*) AS n, count(*) FILTER (WHERE direction = 'overpaid') AS overpaid
        FROM claim_regroup WHERE direction IN ('underpaid', 'overpaid', 'unchanged')
        GROUP BY coder_id""").df()
    if counts.empty:
        return pd.DataFrame(columns=list(FUNNEL_COLUMNS))
    total_n, total_x = int(counts["n"].sum()), int(counts["overpaid"].sum())
    counts = counts[counts["coder_id"].notna()].copy()  # unattributed claims stay in everyone's "rest"
    n = counts["n"].astype("float64").to_numpy()
    x = counts["overpaid"].astype("float64").to_numpy()
    rest_n, rest_x = total_n - n, total_x - x
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = np.where(rest_n > 0, rest_x / rest_n, np.nan)
    tested = (n >= MIN_CODER_CLAIMS) & ~np.isnan(p0)
    p = np.where(tested, binomial_p_greater(x, n, np.nan_to_num(p0)), np.nan)
    limits = funnel_limits(np.nan_to_num(p0), n)
    out = pd.DataFrame({
        "coder_id": counts["coder_id"].astype(str).to_numpy(), "n": n.astype("int64"),
        "overpaid": x.astype("int64"), "rate": x / n, "expected": p0,
        **{k: np.where(np.isnan(p0), np.nan, v) for k, v in limits.items()},
        "p_value": p, "q_value": bh_qvalues(p),
    })
    out["flagged"] = (out["q_value"] < FAMILY_ALPHA).fillna(False).astype(bool)
    return out.sort_values("coder_id").reset_index(drop=True)


_CODER_EVIDENCE_SQL = """
WITH over AS (SELECT claim_id, coder_id, -delta AS overpaid FROM claim_regroup WHERE direction = 'overpaid'),
codes AS (
    SELECT o.coder_id, d.original_code AS code, count(*) AS times
    FROM over o JOIN code_diffs d USING (claim_id)
    WHERE d.kind = 'dx' AND d.role = 'secondary' AND d.result IN ('deleted', 'specificity')
    GROUP BY ALL
)
SELECT o.coder_id, list(o.claim_id ORDER BY o.claim_id) AS claims, sum(o.overpaid) AS exposure,
       coalesce(any_value(c.codes), []::VARCHAR[]) AS codes, coalesce(any_value(c.top), '') AS top
FROM over o
LEFT JOIN (SELECT coder_id, list(code ORDER BY times DESC, code) AS codes,
                  string_agg(code || ' x' || times, ', ' ORDER BY times DESC, code) AS top
           FROM codes GROUP BY coder_id) c USING (coder_id)
GROUP BY o.coder_id
"""


def _coder_flags(con: duckdb.DuckDBPyConnection, funnel: pd.DataFrame) -> pd.DataFrame:
    hit = funnel[funnel["flagged"]].copy()
    if hit.empty:
        return pd.DataFrame(columns=list(FLAG_COLUMNS))
    con.register("_flags_hit", hit)
    try:
        return con.execute(f"""
            SELECT 'coder:coder_overpaid_share:' || h.coder_id AS flag_id, 'coder' AS level, h.coder_id AS entity,
                   'coder_overpaid_share' AS rule, h.rate AS observed, h.expected, h.n,
                   (h.overpaid - h.n * h.expected) / sqrt(nullif(h.n * h.expected * (1 - h.expected), 0))
                       AS statistic,
                   h.p_value, h.q_value, e.exposure,
                   CASE WHEN h.q_value < {HIGH_Q} THEN 'high' WHEN h.q_value < {MEDIUM_Q} THEN 'medium'
                        ELSE 'low' END AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                               'detail', format('{{}} overpaid of {{}} audited claims; codes removed on them: {{}}',
                                                h.overpaid, h.n, coalesce(nullif(e.top, ''), 'none'))
                   )::VARCHAR AS evidence,
                   format('Coder {{}}: {{}} of {{}} audited claims overpaid ({{:.1f}}%) against {{:.1f}}% for the rest '
                          'of the audit (one-sided binomial p = {{:.2g}}, BH q = {{:.2g}}); overpaid ${{:,.2f}}.',
                          h.coder_id, h.overpaid, h.n, 100 * h.rate, 100 * h.expected, h.p_value, h.q_value,
                          e.exposure) AS description
            FROM _flags_hit h JOIN ({_CODER_EVIDENCE_SQL}) e USING (coder_id)
            ORDER BY h.coder_id""").df()
    finally:
        con.unregister("_flags_hit")


# ---------------------------------------------------------------------------------------------
# Facility rules
# ---------------------------------------------------------------------------------------------

def _area_drgs(areas: pd.DataFrame) -> pd.DataFrame:
    num = areas[["target_area", "numerator"]].explode("numerator").rename(columns={"numerator": "drg"})
    den = areas[["target_area", "denominator"]].explode("denominator").rename(columns={"denominator": "drg"})
    return pd.concat([num.assign(part="num"), den.assign(part="den")], ignore_index=True).dropna()


def facility_target_areas(con: duckdb.DuckDBPyConnection, areas: pd.DataFrame,
                          peers: pd.DataFrame | None = None) -> pd.DataFrame:
    """`facility_target_areas` rows plus test columns (peer_rate, p_value) for the flags.

    Counts come from the universe's billed DRGs (`universe` when it has rows, else `claims`)."""
    source = _universe_source(con)
    _temp(con, "_flags_area_drgs", _area_drgs(areas))
    _temp(con, "_flags_areas", areas[["target_area", "direction"]])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _flags_fac_drg AS
        SELECT facility_id, billed_drg AS drg, count(*) AS discharges FROM {source}
        WHERE facility_id IS NOT NULL AND billed_drg IS NOT NULL GROUP BY ALL""")
    like_for_like = False
    if peers is not None:
        peer_cells = normalise_peers(peers)
        like_for_like = bool(len(peer_cells)) and int(peer_cells["discharges"].min()) >= MIN_COUNT
        _temp(con, "_flags_peer_drg", peer_cells.rename(columns={"provider_id": "peer_id"}))
    else:
        con.execute("""CREATE OR REPLACE TEMP TABLE _flags_peer_drg AS
                       SELECT facility_id AS peer_id, drg, discharges FROM _flags_fac_drg""")
    own_filter = f"WHERE f.discharges >= {MIN_COUNT}" if like_for_like else ""
    frame = con.execute(f"""
        WITH own AS (
            SELECT f.facility_id, a.target_area,
                   sum(f.discharges) FILTER (WHERE a.part = 'num') AS num,
                   sum(f.discharges) FILTER (WHERE a.part = 'den') AS den
            FROM _flags_fac_drg f JOIN _flags_area_drgs a USING (drg) {own_filter}
            GROUP BY ALL
        ),
        peer AS (
            SELECT p.peer_id, a.target_area,
                   coalesce(sum(p.discharges) FILTER (WHERE a.part = 'num'), 0) AS num,
                   sum(p.discharges) FILTER (WHERE a.part = 'den') AS den
            FROM _flags_peer_drg p JOIN _flags_area_drgs a USING (drg)
            GROUP BY ALL
        ),
        me AS (SELECT facility_id, target_area, coalesce(num, 0) AS num, den, 100.0 * coalesce(num, 0) / den AS pct
               FROM own WHERE den > 0),
        pr AS (SELECT peer_id, target_area, num, den, 100.0 * num / den AS pct FROM peer WHERE den >= {MIN_COUNT}),
        stats AS (
            SELECT me.facility_id, me.target_area, me.num, me.den, me.pct, any_value(ar.direction) AS direction,
                   count(pr.peer_id) AS peers,
                   count(pr.peer_id) FILTER (WHERE pr.pct < me.pct) AS below,
                   count(pr.peer_id) FILTER (WHERE pr.pct = me.pct) AS ties,
                   count(pr.peer_id) FILTER (WHERE pr.num = 0) AS peers_without_numerator,
                   quantile_cont(pr.pct, 0.2) AS peer_p20, quantile_cont(pr.pct, 0.8) AS peer_p80,
                   sum(pr.num) AS all_num, sum(pr.den) AS all_den
            FROM me
            JOIN _flags_areas ar USING (target_area)
            LEFT JOIN pr ON pr.target_area = me.target_area AND pr.peer_id <> me.facility_id
            GROUP BY me.facility_id, me.target_area, me.num, me.den, me.pct
        ),
        mid AS (
            SELECT s.facility_id, s.target_area, sum(pr.num) AS mid_num, sum(pr.den) AS mid_den
            FROM stats s JOIN pr ON pr.target_area = s.target_area AND pr.peer_id <> s.facility_id
                 AND pr.pct BETWEEN s.peer_p20 AND s.peer_p80
            GROUP BY ALL
        )
        SELECT s.facility_id, s.target_area, CAST(s.num AS BIGINT) AS numerator, CAST(s.den AS BIGINT) AS denominator,
               s.pct AS percent, s.peers, s.below, s.ties, s.peers_without_numerator, s.peer_p20, s.peer_p80,
               CAST(CASE WHEN m.mid_den > 0 THEN m.mid_num ELSE s.all_num END AS DOUBLE) AS peer_num,
               CAST(CASE WHEN m.mid_den > 0 THEN m.mid_den ELSE s.all_den END AS DOUBLE) AS peer_den, s.direction
        FROM stats s LEFT JOIN mid m USING (facility_id, target_area)
        ORDER BY s.target_area, s.facility_id""").df()
    if frame.empty:
        return pd.DataFrame(columns=list(TARGET_COLUMNS) + ["peer_rate", "p_value"])
    peers_n = frame["peers"].astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["peer_percentile"] = np.where(peers_n > 0, 100.0 * (frame["below"] + 0.5 * frame["ties"]) / peers_n,
                                            np.nan)
        frame["peer_rate"] = np.where(frame["peer_den"].fillna(0) > 0,
                                      frame["peer_num"].astype("float64") / frame["peer_den"].astype("float64"),
                                      np.nan)
    marked = pd.Series(False, index=frame.index)
    if peers is not None:
        area_marked = frame.groupby("target_area")["peers_without_numerator"].transform("max") > \
            MOSTLY_SUPPRESSED * frame.groupby("target_area")["peers"].transform("max")
        marked = area_marked & (peers_n > 0)
    frame["suppressed"] = (frame["numerator"] < MIN_COUNT) | (frame["denominator"] < MIN_COUNT) | marked
    rank = frame["peer_percentile"]
    high = frame["direction"].isin(["high", "both"]) & (rank >= HIGH_PERCENTILE)
    low = frame["direction"].isin(["low", "both"]) & (rank <= LOW_PERCENTILE)
    usable = ~frame["suppressed"] & rank.notna()
    frame["outlier"] = np.where(usable & high, "high", np.where(usable & low, "low", None))
    testable = usable & frame["peer_rate"].notna()
    args = (frame["numerator"], frame["denominator"], frame["peer_num"].fillna(0), frame["peer_den"].fillna(0))
    p = np.select([frame["direction"] == "high", frame["direction"] == "low"],
                  [fisher_p(*args, "greater"), fisher_p(*args, "less")], fisher_p(*args, "two-sided"))
    frame["p_value"] = np.where(testable, p, np.nan)
    return frame[list(TARGET_COLUMNS) + ["peer_rate", "p_value"]].reset_index(drop=True)


def short_stay_rates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`short_stay_rates` by facility and coder (needs the temp table _flags_drg_ref), plus the test
    columns for facilities (peer_percentile, peer_rate, p_value)."""
    source = _universe_source(con)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _flags_stays AS
        SELECT s.claim_id, s.facility_id, s.coder_id, s.billed_drg,
               date_diff('day', s.admit_date, s.discharge_date) AS los, ref.gmlos,
               date_diff('day', s.admit_date, s.discharge_date) < {SHORT_STAY_FACTOR} * ref.gmlos AS short
        FROM {source} s
        JOIN _flags_drg_ref ref ON ref.fiscal_year = {fiscal_year_sql('s.discharge_date')}
             AND ref.drg = s.billed_drg AND ref.highest
        WHERE s.admit_date IS NOT NULL AND s.discharge_date IS NOT NULL AND ref.gmlos IS NOT NULL""")
    frame = con.execute(f"""
        WITH stays AS (
            SELECT 'facility' AS level, facility_id AS entity, short FROM _flags_stays WHERE facility_id IS NOT NULL
            UNION ALL
            SELECT 'coder', coder_id, short FROM _flags_stays WHERE coder_id IS NOT NULL
        ),
        rates AS (SELECT level, entity, count(*) AS highest_severity_stays,
                         count(*) FILTER (WHERE short) AS short_stays FROM stays GROUP BY ALL),
        audited AS (
            SELECT r.facility_id, r.coder_id,
                   len(list_filter(string_split(coalesce(r.original_mcc_codes, ''), ' '), lambda c: c <> '')) = 1
                       AS single
            FROM claim_regroup r
            JOIN _flags_drg_ref ref ON ref.fiscal_year = r.fiscal_year AND ref.drg = r.original_drg AND ref.highest
        ),
        single AS (
            SELECT 'facility' AS level, facility_id AS entity, count(*) AS audited_stays,
                   count(*) FILTER (WHERE single) AS single_mcc_stays
            FROM audited WHERE facility_id IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT 'coder', coder_id, count(*), count(*) FILTER (WHERE single)
            FROM audited WHERE coder_id IS NOT NULL GROUP BY ALL
        )
        SELECT level, entity, coalesce(r.highest_severity_stays, 0) AS highest_severity_stays,
               coalesce(r.short_stays, 0) AS short_stays,
               r.short_stays / nullif(r.highest_severity_stays, 0) AS short_stay_rate,
               s.single_mcc_stays, s.single_mcc_stays / nullif(s.audited_stays, 0) AS single_mcc_rate,
               coalesce(r.highest_severity_stays, 0) < {MIN_COUNT} OR coalesce(r.short_stays, 0) < {MIN_COUNT}
                   AS suppressed
        FROM rates r FULL JOIN single s USING (level, entity)
        ORDER BY level, entity""").df()
    frame["peer_percentile"], frame["peer_rate"], frame["p_value"] = np.nan, np.nan, np.nan
    fac = (frame["level"] == "facility").to_numpy()
    if not fac.any():
        return frame
    hs = frame.loc[fac, "highest_severity_stays"].to_numpy(dtype="float64")
    ss = frame.loc[fac, "short_stays"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(hs > 0, ss / hs, np.nan)
    # peers[i, j]: facility j's rate as a peer of facility i (pool: >= 11 stays; never itself)
    usable = (hs >= MIN_COUNT)[None, :] & ~np.eye(len(hs), dtype=bool)
    peers = np.where(usable, rate[None, :], np.nan)
    m = usable.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = np.where(m > 0, 100.0 * ((peers < rate[:, None]).sum(axis=1)
                                        + 0.5 * (peers == rate[:, None]).sum(axis=1)) / m, np.nan)
    mid_num, mid_den = _middle_pool(peers, usable, np.broadcast_to(ss, peers.shape),
                                    np.broadcast_to(hs, peers.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        peer_rate = np.where(mid_den > 0, mid_num / mid_den, np.nan)
    testable = ~frame.loc[fac, "suppressed"].to_numpy(dtype=bool) & ~np.isnan(peer_rate) & ~np.isnan(rate)
    p = np.where(testable, fisher_p(ss, hs, mid_num, mid_den, "greater"), np.nan)
    frame.loc[fac, "peer_percentile"] = rank
    frame.loc[fac, "peer_rate"] = peer_rate
    frame.loc[fac, "p_value"] = p
    return frame


def _middle_pool(rates: np.ndarray, usable: np.ndarray, num: np.ndarray, den: np.ndarray):
    """Per row: pooled numerator and denominator of the peers whose rate lies between the row's peer
    20th and 80th percentiles (all usable peers when that middle is empty), so that one extreme peer
    (a real outlier) does not move the benchmark the others are tested against."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without any usable peer
        p20 = np.nanpercentile(rates, 20, axis=1, keepdims=True)
        p80 = np.nanpercentile(rates, 80, axis=1, keepdims=True)
    middle = usable & (rates >= p20) & (rates <= p80)
    empty = middle.sum(axis=1) == 0
    middle = np.where(empty[:, None], usable, middle)
    return (np.where(middle, num, 0).sum(axis=1).astype("float64"),
            np.where(middle, den, 0).sum(axis=1).astype("float64"))


_TARGET_EVIDENCE_SQL = """
SELECT t.facility_id, t.target_area, list(s.claim_id ORDER BY s.claim_id) AS claims,
       list_sort(list_distinct(list(s.billed_drg))) AS codes
FROM _flags_target_hits t
JOIN _flags_area_drgs a ON a.target_area = t.target_area AND a.part = 'num'
JOIN {source} s ON s.facility_id = t.facility_id AND s.billed_drg = a.drg
GROUP BY ALL
"""


def _facility_flags(con: duckdb.DuckDBPyConnection, targets: pd.DataFrame, stays: pd.DataFrame,
                    areas: pd.DataFrame) -> pd.DataFrame:
    """Flags where the PEPPER-style outlier is also significant (BH q < FAMILY_ALPHA across all facility tests)."""
    fac_stays = stays[stays["level"] == "facility"]
    q = bh_qvalues(np.concatenate([targets["p_value"].to_numpy(dtype="float64"),
                                   fac_stays["p_value"].to_numpy(dtype="float64")]))
    targets = targets.assign(q_value=q[:len(targets)])
    fac_stays = fac_stays.assign(q_value=q[len(targets):])
    source = _universe_source(con)
    parts = []

    hits = targets[targets["outlier"].notna() & (targets["q_value"] < FAMILY_ALPHA)]
    if not hits.empty:
        hits = hits.merge(areas[["target_area", "description"]].rename(columns={"description": "area_text"}),
                          on="target_area", how="left")
        _temp(con, "_flags_target_hits", hits)
        parts.append(con.execute(f"""
            SELECT 'facility:target_area_outlier:' || t.facility_id || ':' || t.target_area AS flag_id,
                   'facility' AS level, t.facility_id AS entity, 'target_area_outlier' AS rule,
                   t.percent / 100 AS observed, t.peer_rate AS expected, t.denominator AS n,
                   t.peer_percentile AS statistic, t.p_value, t.q_value, CAST(NULL AS DOUBLE) AS exposure,
                   CASE WHEN t.q_value < {HIGH_Q} THEN 'high' WHEN t.q_value < {MEDIUM_Q} THEN 'medium'
                        ELSE 'low' END AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                       'detail', format('target area {{}} ({{}}): {{}} of {{}} discharges; {{}} outlier', t.target_area,
                                        t.area_text, t.numerator, t.denominator, t.outlier))::VARCHAR AS evidence,
                   format('Facility {{}}, target area {{}}: {{:.1f}}% ({{}} of {{}} discharges) is at the {{:.0f}}th '
                          'percentile of {{}} peers (20th-80th: {{:.1f}}%-{{:.1f}}%; middle peers pooled {{:.1f}}%), a '
                          '{{}} outlier (Fisher exact p = {{:.2g}}, BH q = {{:.2g}}).',
                          t.facility_id, t.target_area, t.percent, t.numerator, t.denominator, t.peer_percentile,
                          t.peers, t.peer_p20, t.peer_p80, 100 * t.peer_rate, t.outlier, t.p_value, t.q_value)
                       AS description
            FROM _flags_target_hits t
            JOIN ({_TARGET_EVIDENCE_SQL.format(source=source)}) e USING (facility_id, target_area)
            ORDER BY t.target_area, t.facility_id""").df())

    stay_hits = fac_stays[~fac_stays["suppressed"] & (fac_stays["peer_percentile"] >= HIGH_PERCENTILE)
                          & (fac_stays["q_value"] < FAMILY_ALPHA)]
    if not stay_hits.empty:
        _temp(con, "_flags_stay_hits", stay_hits)
        parts.append(con.execute(f"""
            SELECT 'facility:short_stay_highest_severity:' || h.entity AS flag_id, 'facility' AS level,
                   h.entity, 'short_stay_highest_severity' AS rule, h.short_stay_rate AS observed,
                   h.peer_rate AS expected, h.highest_severity_stays AS n, h.peer_percentile AS statistic,
                   h.p_value, h.q_value, CAST(NULL AS DOUBLE) AS exposure,
                   CASE WHEN h.q_value < {HIGH_Q} THEN 'high' WHEN h.q_value < {MEDIUM_Q} THEN 'medium'
                        ELSE 'low' END AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                       'detail', format('{{}} of {{}} highest-severity stays shorter than {{}} x the DRG geometric '
                                        'mean LOS', h.short_stays, h.highest_severity_stays, {SHORT_STAY_FACTOR})
                   )::VARCHAR AS evidence,
                   format('Facility {{}}: {{}} of {{}} highest-severity stays ({{:.1f}}%) were shorter than {{}} x the '
                          'DRG''s geometric mean length of stay, against {{:.1f}}% at the middle peer facilities '
                          '({{:.0f}}th percentile; Fisher exact p = {{:.2g}}, BH q = {{:.2g}}).', h.entity,
                          h.short_stays, h.highest_severity_stays, 100 * h.short_stay_rate, {SHORT_STAY_FACTOR},
                          100 * h.peer_rate, h.peer_percentile, h.p_value, h.q_value) AS description
            FROM _flags_stay_hits h
            JOIN (SELECT facility_id AS entity, list(claim_id ORDER BY claim_id) AS claims,
                         list_sort(list_distinct(list(billed_drg))) AS codes
                  FROM _flags_stays WHERE short GROUP BY ALL) e USING (entity)
            ORDER BY h.entity""").df())
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FLAG_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def build_flags(con: duckdb.DuckDBPyConnection, peers: pd.DataFrame | None = None, watchlist_path=None,
                target_areas_path=None, weights_dir=None) -> dict:
    """(Re)create upcoding_flags, upcoding_rules, coder_funnel, facility_target_areas and short_stay_rates;
    return the number of flags by level {"claim": n, "coder": n, "facility": n}."""
    source = _universe_source(con)
    weights = _weights_for(con, source, weights_dir)
    ref = drg_reference(weights)
    _temp(con, "_flags_drg_ref", ref[["fiscal_year", "drg", "title", "mdc", "family", "level", "family_size",
                                      "highest", "weight", "gmlos"]])
    _temp(con, "_flags_watchlist", load_watchlist(watchlist_path))
    areas = load_target_areas(target_areas_path, weights)

    claims = claim_flags(con)
    funnel = coder_funnel(con)
    coders = _coder_flags(con, funnel)
    targets = facility_target_areas(con, areas, peers)
    stays = short_stay_rates(con)
    facilities = _facility_flags(con, targets, stays, areas)

    parts = [f for f in (claims, coders, facilities) if not f.empty]
    flags = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FLAG_COLUMNS))
    _write(con, "upcoding_flags", flags, FLAG_COLUMNS)
    _write(con, "upcoding_rules", RULES, RULE_COLUMNS)
    _write(con, "coder_funnel", funnel, FUNNEL_COLUMNS)
    _write(con, "facility_target_areas", targets, TARGET_COLUMNS)
    _write(con, "short_stay_rates", stays, SHORT_STAY_COLUMNS)
    for name in ("_flags_drg_ref", "_flags_watchlist", "_flags_claim_base", "_flags_removed", "_flags_area_drgs",
                 "_flags_areas", "_flags_fac_drg", "_flags_peer_drg", "_flags_stays", "_flags_target_hits",
                 "_flags_stay_hits"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return flag_summary(con)


def flag_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Flags by level from `upcoding_flags`: {"claim": n, "coder": n, "facility": n} (flags, not distinct
    entities: one claim can carry several claim rules)."""
    counts = dict(con.execute("SELECT level, count(*) FROM upcoding_flags GROUP BY level").fetchall())
    return {level: int(counts.get(level, 0)) for level in ("claim", "coder", "facility")}
