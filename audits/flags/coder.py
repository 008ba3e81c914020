"""Coder rule `coder_overpaid_share`: a coder's overpaid share of audited claims against the rest of the
audit, by Fisher's exact test (the rest's share is itself an estimate, not a known rate), BH across coders."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from audits.flags.common import FLAG_COLUMNS, FUNNEL_COLUMNS, MIN_CODER_CLAIMS, Q_THRESHOLD, severity_sql
from audits.flags.stats import bh_qvalues, coder_limits, fisher_p


def coder_funnel(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per coder with priced audited claims: overpaid share, rest-of-audit share, limits, p, q.

    x overpaid of n for the coder, y of m for every other priced audited claim (claims without a coder
    included); p = one-sided Fisher exact P(X >= x), X ~ Hypergeometric(n + m, x + y, n). Coders with
    n < 11 are shown, not tested. Limits: the same hypergeometric's quantiles (`stats.coder_limits`)."""
    counts = con.execute("""
        SELECT coder_id, count(*) AS n, count(*) FILTER (WHERE direction = 'overpaid') AS overpaid
        FROM claim_regroup WHERE direction IN ('underpaid', 'overpaid', 'unchanged')
        GROUP BY coder_id""").df()
    if counts.empty:
        return pd.DataFrame(columns=list(FUNNEL_COLUMNS))
    total_n, total_x = int(counts["n"].sum()), int(counts["overpaid"].sum())
    counts = counts[counts["coder_id"].notna()].copy()
    n = counts["n"].astype("float64").to_numpy()
    x = counts["overpaid"].astype("float64").to_numpy()
    rest_n, rest_x = total_n - n, total_x - x
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = np.where(rest_n > 0, rest_x / rest_n, np.nan)
    tested = (n >= MIN_CODER_CLAIMS) & (rest_n > 0)
    p = np.where(tested, fisher_p(x, n, rest_x, rest_n, "greater"), np.nan)
    out = pd.DataFrame({
        "coder_id": counts["coder_id"].astype(str).to_numpy(), "n": n.astype("int64"),
        "overpaid": x.astype("int64"), "rate": x / n, "expected": p0,
        "audit_claims": total_n, "audit_overpaid": total_x,
        **coder_limits(total_n, total_x, n),
        "p_value": p, "q_value": bh_qvalues(p),
    })
    out["flagged"] = (out["q_value"] < Q_THRESHOLD).fillna(False).astype(bool)
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


def coder_flags(con: duckdb.DuckDBPyConnection, funnel: pd.DataFrame) -> pd.DataFrame:
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
                   {severity_sql("h.q_value")} AS severity,
                   json_object('claims', e.claims, 'codes', e.codes,
                               'detail', format('{{}} overpaid of {{}} audited claims; codes removed on them: {{}}',
                                                h.overpaid, h.n, coalesce(nullif(e.top, ''), 'none'))
                   )::VARCHAR AS evidence,
                   format('Coder {{}}: {{}} of {{}} audited claims overpaid ({{:.1f}}%) against {{:.1f}}% for the rest '
                          'of the audit (Fisher exact p = {{:.2g}}, BH q = {{:.2g}}); overpaid ${{:,.2f}}.',
                          h.coder_id, h.overpaid, h.n, 100 * h.rate, 100 * h.expected, h.p_value, h.q_value,
                          e.exposure) AS description
            FROM _flags_hit h JOIN ({_CODER_EVIDENCE_SQL}) e USING (coder_id)
            ORDER BY h.coder_id""").df()
    finally:
        con.unregister("_flags_hit")

