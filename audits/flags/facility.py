"""Facility rules: PEPPER target areas against complete peers and highest-severity short stays, each tested
with Spiegelhalter's overdispersed funnel (rules and formulas: audits/flags/__init__.py)."""

from __future__ import annotations

import warnings

import duckdb
import numpy as np
import pandas as pd

from audits.codes import fiscal_year_sql
from audits.flags.common import (FLAG_COLUMNS, MIN_COUNT, Q_THRESHOLD, SHORT_STAY_FACTOR, TARGET_COLUMNS,
                                 normalise_peers, severity_sql, temp_table, universe_source)
from audits.flags.stats import bh_qvalues, overdispersed_p, overdispersed_z, overdispersion

HIGH_PERCENTILE, LOW_PERCENTILE = 80.0, 20.0


def _area_drgs(areas: pd.DataFrame) -> pd.DataFrame:
    num = areas[["target_area", "numerator"]].explode("numerator").rename(columns={"numerator": "drg"})
    den = areas[["target_area", "denominator"]].explode("denominator").rename(columns={"denominator": "drg"})
    return pd.concat([num.assign(part="num"), den.assign(part="den")], ignore_index=True).dropna()


def peer_comparison(own: pd.DataFrame, peers: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per row of `own` (entity, `key`, num, den): its peers' p20/p80 (linear interpolation), its midrank
    percentile, peers count, p0, tau2, z and z_D. `peers` (peer_id, `key`, num, den) holds the complete peers
    only; a peer with the entity's own id is never its own peer. Vectorised per `key` value (an area)."""
    parts = []
    for value, mine in own.groupby(key, sort=False):
        theirs = peers[peers[key] == value]
        mask = mine["entity"].to_numpy()[:, None] != theirs["peer_id"].to_numpy()[None, :]
        num, den = theirs["num"].to_numpy(dtype="float64"), theirs["den"].to_numpy(dtype="float64")
        mask = mask & (den > 0)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # entities without any peer
            pct = np.where(mask, 100.0 * num / den, np.nan)
            none = np.full(len(mine), np.nan)
            p20 = np.nanpercentile(pct, LOW_PERCENTILE, axis=1) if pct.shape[1] else none
            p80 = np.nanpercentile(pct, HIGH_PERCENTILE, axis=1) if pct.shape[1] else none
            mine_pct = 100.0 * mine["num"].to_numpy(dtype="float64") / mine["den"].to_numpy(dtype="float64")
            count = mask.sum(axis=1)
            rank = 100.0 * ((pct < mine_pct[:, None]).sum(axis=1) + 0.5 * (pct == mine_pct[:, None]).sum(axis=1)) \
                / count
        od = overdispersion(num[None, :], den[None, :], mask)
        z, z_d = overdispersed_z(mine["num"], mine["den"], od["p0"], od["tau2"])
        parts.append(mine.assign(percent=mine_pct, peers=count, peer_p20=p20, peer_p80=p80,
                                 peer_percentile=np.where(count > 0, rank, np.nan), p0=od["p0"], tau2=od["tau2"],
                                 var_p0=od["var_p0"], z=z, z_d=z_d))
    extra = ["percent", "peers", "peer_p20", "peer_p80", "peer_percentile", "p0", "tau2", "var_p0", "z", "z_d"]
    return pd.concat(parts, ignore_index=True) if parts else own.assign(**{c: np.nan for c in extra})


def facility_target_areas(con: duckdb.DuckDBPyConnection, areas: pd.DataFrame,
                          peers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`facility_target_areas` rows (q_value and flagged filled by `facility_flags`) and `target_area_peers`
    (each peer's counts per area and whether it is complete, for the funnel plots).

    Facility counts: the universe's billed DRGs (`universe` when it has rows, else `claims`). Peers: the
    `peers` file, else the other facilities of the universe. A peer counts for an area when its denominator
    is >= 11 and, in a suppressed file (every cell >= 11), it reports every DRG cell of the area."""
    source = universe_source(con)
    temp_table(con, "_flags_area_drgs", _area_drgs(areas))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _flags_fac_drg AS
        SELECT facility_id, billed_drg AS drg, count(*) AS discharges FROM {source}
        WHERE facility_id IS NOT NULL AND billed_drg IS NOT NULL GROUP BY ALL""")
    suppressed_file = False
    if peers is not None:
        peer_cells = normalise_peers(peers)
        suppressed_file = bool(len(peer_cells)) and int(peer_cells["discharges"].min()) >= MIN_COUNT
        temp_table(con, "_flags_peer_drg", peer_cells.rename(columns={"provider_id": "peer_id"}))
    else:
        con.execute("""CREATE OR REPLACE TEMP TABLE _flags_peer_drg AS
                       SELECT facility_id AS peer_id, drg, discharges FROM _flags_fac_drg""")
    counts = """
        SELECT {who}, a.target_area,
               coalesce(sum(x.discharges) FILTER (WHERE a.part = 'num'), 0) AS num,
               coalesce(sum(x.discharges) FILTER (WHERE a.part = 'den'), 0) AS den,
               count(DISTINCT x.drg) AS cells
        FROM {table} x JOIN _flags_area_drgs a USING (drg) GROUP BY ALL"""
    own = con.execute(counts.format(who="x.facility_id AS entity", table="_flags_fac_drg")
                      + " HAVING den > 0").df()
    peer = con.execute(f"""
        WITH c AS ({counts.format(who="x.peer_id", table="_flags_peer_drg")}),
        n AS (SELECT target_area, count(DISTINCT drg) AS area_cells FROM _flags_area_drgs GROUP BY ALL)
        SELECT c.*, c.den >= {MIN_COUNT} AND ({not suppressed_file} OR c.cells = n.area_cells) AS complete
        FROM c JOIN n USING (target_area)
        ORDER BY target_area, peer_id""").df()  # in a fixed order: tau2's sums come out to the same last bit
    with np.errstate(divide="ignore", invalid="ignore"):
        peer_rows = pd.DataFrame({
            "target_area": peer["target_area"], "peer_id": peer["peer_id"].astype(str),
            "numerator": peer["num"], "denominator": peer["den"],
            "percent": np.where(peer["den"] > 0, 100.0 * peer["num"] / peer["den"], np.nan),
            "complete": peer["complete"].astype(bool)}).sort_values(["target_area", "peer_id"])
    if own.empty:
        return pd.DataFrame(columns=list(TARGET_COLUMNS)), peer_rows
    own = own.merge(areas[["target_area", "direction"]], on="target_area")
    frame = peer_comparison(own, peer[peer["complete"]], "target_area")
    # Incomplete peers of an area, less the facility itself where it is one (counted, not paired: a
    # national file is ~3,000 facilities x ~2,500 incomplete peers per area).
    left_out = peer[~peer["complete"]]
    per_area = left_out.groupby("target_area").size()
    own_left_out = pd.MultiIndex.from_frame(left_out[["peer_id", "target_area"]].astype(str))
    frame["peers_incomplete"] = (frame["target_area"].map(per_area).fillna(0).to_numpy(dtype="int64")
                                 - pd.MultiIndex.from_frame(frame[["entity", "target_area"]].astype(str))
                                 .isin(own_left_out).astype("int64"))
    frame = frame.rename(columns={"entity": "facility_id", "num": "numerator", "den": "denominator"})
    frame["suppressed"] = (frame["numerator"] < MIN_COUNT) | (frame["denominator"] < MIN_COUNT)
    usable = ~frame["suppressed"] & (frame["peers"] > 0)
    pct, direction = frame["percent"], frame["direction"]
    high = direction.isin(["high", "both"]) & (pct >= frame["peer_p80"])
    low = direction.isin(["low", "both"]) & (pct <= frame["peer_p20"])
    frame["outlier"] = np.where(usable & high, "high", np.where(usable & low, "low", None))
    frame["p_value"] = np.where(usable & frame["tau2"].notna(), overdispersed_p(
        frame["numerator"], frame["denominator"], frame["p0"], frame["tau2"], frame["var_p0"], direction), np.nan)
    frame["q_value"], frame["flagged"] = np.nan, False
    return frame[list(TARGET_COLUMNS)].sort_values(["target_area", "facility_id"]).reset_index(drop=True), peer_rows


def short_stay_rates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`short_stay_rates` by facility and coder (needs the temp table _flags_drg_ref); facilities get the
    peer comparison against the other facilities with >= 11 highest-severity stays."""
    source = universe_source(con)
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
                   len(list_filter(string_split(coalesce(r.original_severity_codes, ''), ' '),
                                   lambda c: ends_with(c, ':MCC'))) AS mccs
            FROM claim_regroup r
            JOIN _flags_drg_ref ref ON ref.fiscal_year = r.fiscal_year AND ref.drg = r.original_drg AND ref.highest
        ),
        single AS (
            SELECT 'facility' AS level, facility_id AS entity, count(*) FILTER (WHERE mccs >= 1) AS audited_mcc_stays,
                   count(*) FILTER (WHERE mccs = 1) AS single_mcc_stays
            FROM audited WHERE facility_id IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT 'coder', coder_id, count(*) FILTER (WHERE mccs >= 1), count(*) FILTER (WHERE mccs = 1)
            FROM audited WHERE coder_id IS NOT NULL GROUP BY ALL
        )
        SELECT level, entity, coalesce(r.highest_severity_stays, 0) AS highest_severity_stays,
               coalesce(r.short_stays, 0) AS short_stays,
               r.short_stays / nullif(r.highest_severity_stays, 0) AS short_stay_rate,
               s.audited_mcc_stays, s.single_mcc_stays, s.single_mcc_stays / nullif(s.audited_mcc_stays, 0)
                   AS single_mcc_rate,
               coalesce(r.highest_severity_stays, 0) < {MIN_COUNT} OR coalesce(r.short_stays, 0) < {MIN_COUNT}
                   AS suppressed
        FROM rates r FULL JOIN single s USING (level, entity)
        ORDER BY level, entity""").df()
    for column in ("peers", "peer_p80", "p0", "tau2", "z_d", "p_value", "q_value"):
        frame[column] = np.nan
    frame["flagged"] = False
    fac = frame[(frame["level"] == "facility") & (frame["highest_severity_stays"] > 0)]
    if fac.empty:
        return frame
    own = pd.DataFrame({"entity": fac["entity"], "area": "short_stay", "num": fac["short_stays"],
                        "den": fac["highest_severity_stays"]})
    pool = own[own["den"] >= MIN_COUNT].rename(columns={"entity": "peer_id"})
    got = peer_comparison(own, pool, "area").set_index("entity")
    idx = fac.index
    entity = frame.loc[idx, "entity"]
    for column in ("peers", "peer_p80", "p0", "tau2", "z_d"):
        frame.loc[idx, column] = entity.map(got[column]).to_numpy(dtype="float64")
    var_p0 = entity.map(got["var_p0"]).to_numpy(dtype="float64")
    frame["peer_p80"] = frame["peer_p80"] / 100.0   # a proportion, like short_stay_rate
    testable = ~frame.loc[idx, "suppressed"].astype(bool) & frame.loc[idx, "tau2"].notna() \
        & (frame.loc[idx, "peers"] > 0)
    p = overdispersed_p(frame.loc[idx, "short_stays"], frame.loc[idx, "highest_severity_stays"], frame.loc[idx, "p0"],
                        frame.loc[idx, "tau2"], var_p0, "high")
    frame.loc[idx, "p_value"] = np.where(testable, p, np.nan)
    return frame


_TARGET_EVIDENCE_SQL = """
SELECT t.facility_id, t.target_area, list(s.claim_id ORDER BY s.claim_id) AS claims,
       list_sort(list_distinct(list(s.billed_drg))) AS codes
FROM _flags_target_hits t
JOIN _flags_area_drgs a ON a.target_area = t.target_area AND a.part = 'num'
JOIN {source} s ON s.facility_id = t.facility_id AND s.billed_drg = a.drg
GROUP BY ALL
"""


def facility_flags(con: duckdb.DuckDBPyConnection, targets: pd.DataFrame, stays: pd.DataFrame,
                   areas: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """BH across every facility test (target areas and short stays together); a flag = the outlier AND
    q < Q_THRESHOLD. Returns (flags, targets, stays) with q_value and flagged filled in."""
    fac = (stays["level"] == "facility").to_numpy()
    q = bh_qvalues(np.concatenate([targets["p_value"].to_numpy(dtype="float64"),
                                   stays.loc[fac, "p_value"].to_numpy(dtype="float64")]))
    targets = targets.assign(q_value=q[:len(targets)])
    targets["flagged"] = targets["outlier"].notna() & (targets["q_value"] < Q_THRESHOLD)
    stays = stays.copy()
    stays.loc[fac, "q_value"] = q[len(targets):]
    stays["flagged"] = fac & ~stays["suppressed"].fillna(True).astype(bool) \
        & (stays["short_stay_rate"] >= stays["peer_p80"]) & (stays["q_value"] < Q_THRESHOLD)
    source = universe_source(con)
    parts = []

    hits = targets[targets["flagged"]]
    if not hits.empty:
        hits = hits.merge(areas[["target_area", "description"]].rename(columns={"description": "area_text"}),
                          on="target_area", how="left")
        temp_table(con, "_flags_target_hits", hits)
        parts.append(con.execute(f"""
            SELECT 'facility:target_area_outlier:' || t.facility_id || ':' || t.target_area AS flag_id,
                   'facility' AS level, t.facility_id AS entity, 'target_area_outlier' AS rule,
                   t.percent / 100 AS observed, t.p0 AS expected, t.denominator AS n,
                   t.z_d AS statistic, t.p_value, t.q_value, CAST(NULL AS DOUBLE) AS exposure,
                   {severity_sql("t.q_value")} AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                       'detail', format('target area {{}} ({{}}): {{}} of {{}} discharges; {{}} outlier', t.target_area,
                                        t.area_text, t.numerator::BIGINT, t.denominator::BIGINT,
                                        t.outlier))::VARCHAR AS evidence,
                   format('Facility {{}}, target area {{}}: {{:.1f}}% ({{}} of {{}} discharges) is {{}} the peers'' '
                          '{{}} percentile ({{:.1f}}%; 20th-80th {{:.1f}}%-{{:.1f}}% over {{}} complete peers, {{}} '
                          'incomplete left out), a {{}} outlier. Pooled peer rate {{:.1f}}%, between-hospital '
                          'variance tau2 = {{:.2g}}; overdispersed z = {{:.2f}} (p = {{:.2g}}, BH q = {{:.2g}}).',
                          t.facility_id, t.target_area, t.percent, t.numerator::BIGINT, t.denominator::BIGINT,
                          CASE t.outlier WHEN 'high' THEN 'at or above' ELSE 'at or below' END,
                          CASE t.outlier WHEN 'high' THEN '80th' ELSE '20th' END,
                          CASE t.outlier WHEN 'high' THEN t.peer_p80 ELSE t.peer_p20 END,
                          t.peer_p20, t.peer_p80, t.peers, t.peers_incomplete, t.outlier, 100 * t.p0, t.tau2,
                          t.z_d, t.p_value, t.q_value) AS description
            FROM _flags_target_hits t
            JOIN ({_TARGET_EVIDENCE_SQL.format(source=source)}) e USING (facility_id, target_area)
            ORDER BY t.target_area, t.facility_id""").df())

    stay_hits = stays[stays["flagged"]]
    if not stay_hits.empty:
        temp_table(con, "_flags_stay_hits", stay_hits)
        parts.append(con.execute(f"""
            SELECT 'facility:short_stay_highest_severity:' || h.entity AS flag_id, 'facility' AS level,
                   h.entity, 'short_stay_highest_severity' AS rule, h.short_stay_rate AS observed,
                   h.p0 AS expected, h.highest_severity_stays AS n, h.z_d AS statistic,
                   h.p_value, h.q_value, CAST(NULL AS DOUBLE) AS exposure,
                   {severity_sql("h.q_value")} AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                       'detail', format('{{}} of {{}} highest-severity stays shorter than {{}} x the DRG geometric '
                                        'mean LOS', h.short_stays, h.highest_severity_stays, {SHORT_STAY_FACTOR})
                   )::VARCHAR AS evidence,
                   format('Facility {{}}: {{}} of {{}} highest-severity stays ({{:.1f}}%) were shorter than {{}} x the '
                          'DRG''s geometric mean length of stay, at or above the peer facilities'' 80th percentile '
                          '({{:.1f}}%); pooled peer rate {{:.1f}}%, overdispersed z = {{:.2f}} (p = {{:.2g}}, '
                          'BH q = {{:.2g}}).', h.entity, h.short_stays, h.highest_severity_stays,
                          100 * h.short_stay_rate, {SHORT_STAY_FACTOR}, 100 * h.peer_p80, 100 * h.p0, h.z_d, h.p_value,
                          h.q_value) AS description
            FROM _flags_stay_hits h
            JOIN (SELECT facility_id AS entity, list(claim_id ORDER BY claim_id) AS claims,
                         list_sort(list_distinct(list(billed_drg))) AS codes
                  FROM _flags_stays WHERE short GROUP BY ALL) e USING (entity)
            ORDER BY h.entity""").df())
    parts = [p for p in parts if not p.empty]
    flags = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FLAG_COLUMNS))
    return flags, targets, stays
