"""Claim rules over `claim_regroup` and `code_diffs`: a severity code removed, a high-risk code removed,
a heavier DRG with the same principal diagnosis. Exposure = the claim's overpaid magnitude."""

from __future__ import annotations

import duckdb
import pandas as pd

from audits.flags.common import HIGH_EXPOSURE, MEDIUM_EXPOSURE

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

