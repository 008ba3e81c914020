"""Shared parts of the upcoding flags: table shapes, thresholds, the rule list, configuration files
(watchlist, target areas, peers) and small helpers over the DuckDB connection."""

from __future__ import annotations

import csv
import io
import re
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from audits.codes import fiscal_year_sql, normalise_code
from audits.revenue.weights import drg_family, load_weights, spelled_out_title

MIN_COUNT = 11                 # PEPPER / CMS small-cell rule
MIN_CODER_CLAIMS = 11
# Coders and facilities are two families of tests (BH within each). A flag needs BH q < Q_THRESHOLD.
# Chosen on clean demo seeds 1000-1099 (5,000 claims, 800 audited; benchmarks/flag_calibration.py): runs with
# any coder or facility flag 3 of 100 at q < 0.01, 5 at 0.025, 6 at 0.05. Measured on 200 seeds drawn at run
# time (665706-665905): 2 of 200.
Q_THRESHOLD = 0.01
SHORT_STAY_FACTOR = 0.8        # OIG OEI-02-18-00380: LOS < 0.8 x geometric mean LOS
HIGH_EXPOSURE, MEDIUM_EXPOSURE = 5000.0, 1000.0
HIGH_Q, MEDIUM_Q = 0.0001, 0.001

FLAG_COLUMNS = {
    "flag_id": "VARCHAR", "level": "VARCHAR", "entity": "VARCHAR", "rule": "VARCHAR", "observed": "DOUBLE",
    "expected": "DOUBLE", "n": "BIGINT", "statistic": "DOUBLE", "p_value": "DOUBLE", "q_value": "DOUBLE",
    "exposure": "DOUBLE", "severity": "VARCHAR", "evidence": "VARCHAR", "description": "VARCHAR",
}
FUNNEL_COLUMNS = {
    "coder_id": "VARCHAR", "n": "BIGINT", "overpaid": "BIGINT", "rate": "DOUBLE", "expected": "DOUBLE",
    "audit_claims": "BIGINT", "audit_overpaid": "BIGINT",
    "lower_95": "DOUBLE", "upper_95": "DOUBLE", "lower_998": "DOUBLE", "upper_998": "DOUBLE",
    "p_value": "DOUBLE", "q_value": "DOUBLE", "flagged": "BOOLEAN",
}
TARGET_COLUMNS = {
    "facility_id": "VARCHAR", "target_area": "VARCHAR", "numerator": "BIGINT", "denominator": "BIGINT",
    "percent": "DOUBLE", "peer_percentile": "DOUBLE", "peer_p20": "DOUBLE", "peer_p80": "DOUBLE",
    "peers": "BIGINT", "peers_incomplete": "BIGINT", "direction": "VARCHAR", "outlier": "VARCHAR",
    "suppressed": "BOOLEAN", "p0": "DOUBLE", "tau2": "DOUBLE", "z": "DOUBLE", "z_d": "DOUBLE",
    "p_value": "DOUBLE", "q_value": "DOUBLE", "flagged": "BOOLEAN",
}
PEER_COLUMNS = {
    "target_area": "VARCHAR", "peer_id": "VARCHAR", "numerator": "BIGINT", "denominator": "BIGINT",
    "percent": "DOUBLE", "complete": "BOOLEAN",
}
SHORT_STAY_COLUMNS = {
    "level": "VARCHAR", "entity": "VARCHAR", "highest_severity_stays": "BIGINT", "short_stays": "BIGINT",
    "short_stay_rate": "DOUBLE", "audited_mcc_stays": "BIGINT", "single_mcc_stays": "BIGINT",
    "single_mcc_rate": "DOUBLE", "suppressed": "BOOLEAN", "peers": "BIGINT", "peer_p80": "DOUBLE",
    "p0": "DOUBLE", "tau2": "DOUBLE", "z_d": "DOUBLE", "p_value": "DOUBLE", "q_value": "DOUBLE",
    "flagged": "BOOLEAN",
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
     f"n >= {MIN_CODER_CLAIMS}; one-sided Fisher exact test against the rest of the audit; Benjamini-Hochberg "
     f"q < {Q_THRESHOLD} across coders; severity {_Q_SEVERITY}",
     "DESIGN.md 'Upcoding flags' (funnel plot with control limits)"),
    ("target_area_outlier", "facility",
     "PEPPER target area: the facility's percent of billed DRGs against its complete peers. observed = facility "
     "rate, expected = peers' pooled rate p0, n = denominator, statistic = overdispersed z score z_D.",
     f"percent >= peers' 80th percentile (high) or <= 20th (low, coding targets); numerator and denominator "
     f">= {MIN_COUNT}; Spiegelhalter overdispersed test (beta-binomial tail with the peers' pooled rate and "
     f"between-hospital variance tau2, one-sided in the area's direction, two-sided for 'both'), "
     f"Benjamini-Hochberg q < {Q_THRESHOLD} across facility tests; severity {_Q_SEVERITY}",
     "CMS ST PEPPER target areas; audits/data/target_areas.csv (see TARGET_AREAS.md); Spiegelhalter, "
     "Stat Med 2005;24:1185-1202"),
    ("short_stay_highest_severity", "facility",
     "Highest-severity (WITH MCC) stays shorter than 0.8 x the DRG's geometric mean length of stay. "
     "observed = facility short-stay rate, expected = peer facilities' pooled rate p0, statistic = z_D.",
     f"stays and short stays >= {MIN_COUNT}; rate >= the peer facilities' 80th percentile; one-sided "
     f"overdispersed test (as for target areas), Benjamini-Hochberg q < {Q_THRESHOLD} across facility tests; severity {_Q_SEVERITY}",
     "OIG OEI-02-18-00380; CMS IPPS Table 5 geometric mean LOS"),
], columns=list(RULE_COLUMNS))


def severity_sql(q: str) -> str:
    """Severity of a coder or facility flag from its q-value column."""
    return f"CASE WHEN {q} < {HIGH_Q} THEN 'high' WHEN {q} < {MEDIUM_Q} THEN 'medium' ELSE 'low' END"


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
    # FY2016-FY2020 titles abbreviate the split ("W MCC", "W/O CC/MCC"): read them as spelled out.
    ref["title"] = ref["title"].astype("string").fillna("").map(spelled_out_title)
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

def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def universe_source(con: duckdb.DuckDBPyConnection) -> str:
    if table_exists(con, "universe") and con.execute("SELECT count(*) FROM universe").fetchall()[0][0] > 0:
        return "universe"
    return "claims"


def write_table(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame | None, columns: dict[str, str]
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


def temp_table(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    con.register("_flags_tmp", frame)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _flags_tmp")
    finally:
        con.unregister("_flags_tmp")


def weights_for(con: duckdb.DuckDBPyConnection, source: str, weights_dir) -> pd.DataFrame:
    years = {int(y) for (y,) in con.execute(
        f"SELECT DISTINCT {fiscal_year_sql('discharge_date')} FROM {source} WHERE discharge_date IS NOT NULL"
    ).fetchall()}
    years |= {int(y) for (y,) in con.execute(
        "SELECT DISTINCT fiscal_year FROM claim_regroup WHERE fiscal_year IS NOT NULL").fetchall()}
    return load_weights(sorted(years) or [2026], extra_dir=weights_dir)


