"""Original vs audited codes: the code-level differences and the error rates audit teams quote.

Implements DESIGN.md "Definitions" set-based in DuckDB SQL. Every function takes a DuckDB connection on
which the published tables `claims`, `reviews` and `claim_codes` exist and (re)creates its table in one
statement, so a failure never leaves a half-written table behind.

An *audited claim* is a claim with a review (inner join of `claims` and `reviews`).

`code_diffs` rules, exactly:

* Codes are compared as stored in `claim_codes` (normalised). NULL codes are ignored.
* Duplicates: a code listed twice on one side of one claim (same kind) counts once, at its FIRST
  (lowest) position, with that position's POA. A later duplicate produces no row of its own.
* Principal (position 1; dx1 the principal diagnosis, px1 the principal procedure), first rule that holds:
  `match` (same code; a POA-only difference stays `match`, both POAs are in the row) ·
  `resequenced` (the audited principal is an original secondary, or the original principal is an audited
  secondary) · `specificity` (same first 3 characters: the ICD-10-CM category; for ICD-10-PCS the section,
  body system and root operation) · `changed`. If only one side has a principal (e.g. the auditor added
  the only procedure) the row is `deleted` (original side only) or `added` (audited side only).
* Secondaries (positions 2..25): S_o = original secondaries minus the audited principal, S_a = audited
  secondaries minus the original principal, so the code swapped in a resequencing is not also a secondary
  deletion/addition. A code in both: `match`, or `poa_changed` when the POA differs (NULL vs a value
  counts as different). S_o \\ S_a: `deleted`; S_a \\ S_o: `added`. Within a claim and 3-character
  category, deleted and added codes pair one-to-one in position order (1st deleted with 1st added, ...)
  into ONE `specificity` row carrying both codes and positions; leftovers stay deleted/added.
* Procedures follow the same rules (kind 'px'); they carry no POA, so `poa_changed` never occurs for px.
  A claim with no procedure on either side has no px rows.
* Extra column `role` ('principal' | 'secondary') says which rule set produced the row.

Metric names in `error_rates` (long form; breakdown 'all' | 'coder' | 'facility' | 'service_line' |
'payer' | 'audit_month'; audit_month = discharge month 'YYYY-MM'; a missing breakdown value is shown as
'(missing)'):

* `record_error_rate`: principal dx result != match, or >= 1 secondary dx deleted/added/specificity.
  Diagnoses only, as DESIGN.md defines it: procedures are not part of the record rate.
* `principal_dx_error_rate`: principal dx result != match (resequenced counts as an error).
* `secondary_dx_error_rate`: >= 1 secondary dx deleted/added/specificity (poa_changed is not an error).
* `procedure_error_rate`: >= 1 px row other than match. Denominator: ALL audited claims, not only
  claims with a procedure, so that it is on the same base as the other rates (a claim correctly coded
  with no procedure is an error-free record) and the four rates can be read side by side.
* `dx_position_<p>` (p = 1..25): among audited claims with an original dx at position p (from
  `claim_codes`, duplicates included), the share whose code at p is not supported: p = 1 principal
  result != match; p >= 2 the code's row is `deleted` or a `specificity` pair. A later duplicate of a
  kept code is never counted as an error at its own position. Position rates are never summed.
* `dx_omitted`: audited claims with >= 1 secondary dx `added`, over audited claims.
* `error_type:<kind>:<result>` (kind dx | px; every non-match result, zero counts included; no
  px poa_changed, procedures have no POA; principal and secondary rows of one result are summed,
  `code_diffs.role` splits them):
  errors = number of code_diffs rows, n = audited claims, rate = rows per audited claim, no interval
  (a count, not a proportion).

Rates carry a 95% Wilson interval (`audits.stats.wilson_interval`); `small_cell` = n < 11 (kept, marked).
"""

from __future__ import annotations

from audits.contract import MAX_POSITIONS
from audits.stats import wilson_interval

SMALL_CELL = 11  # cells with fewer audited claims are kept but marked (CMS cell-size convention)

RATE_METRICS = (
    "record_error_rate",
    "principal_dx_error_rate",
    "secondary_dx_error_rate",
    "procedure_error_rate",
)
POSITION_METRICS = tuple(f"dx_position_{p}" for p in range(1, MAX_POSITIONS + 1)) + ("dx_omitted",)
ERROR_RESULTS = ("resequenced", "specificity", "changed", "deleted", "added", "poa_changed")
# Procedures carry no POA, so px poa_changed cannot occur and has no row.
ERROR_TYPES = tuple((k, r) for k in ("dx", "px") for r in ERROR_RESULTS if (k, r) != ("px", "poa_changed"))
ERROR_TYPE_METRICS = tuple(f"error_type:{k}:{r}" for k, r in ERROR_TYPES)
METRICS = RATE_METRICS + POSITION_METRICS + ERROR_TYPE_METRICS
BREAKDOWNS = ("all", "coder", "facility", "service_line", "payer", "audit_month")

# Secondary results that are diagnosis errors (poa_changed is reported but is not one).
SECONDARY_ERRORS = ("deleted", "added", "specificity")

_AUDITED_CLAIMS = "(SELECT c.claim_id FROM claims c JOIN reviews r ON r.claim_id = c.claim_id)"


def build_code_diffs(con) -> int:
    """(Re)create `code_diffs`: one row per compared code per audited claim. Returns its row count."""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE code_diffs AS
        WITH codes AS (  -- first position of each distinct code per claim, side and kind
            SELECT cc.claim_id, cc.side, cc.kind, cc.position, cc.code, cc.poa
            FROM claim_codes cc SEMI JOIN {_AUDITED_CLAIMS} a ON a.claim_id = cc.claim_id
            WHERE cc.code IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY cc.claim_id, cc.side, cc.kind, cc.code ORDER BY cc.position) = 1
        ),
        principals AS (
            SELECT claim_id, kind,
                   max(code) FILTER (WHERE side = 'original') AS p_o,
                   max(poa)  FILTER (WHERE side = 'original') AS poa_o,
                   max(code) FILTER (WHERE side = 'audited')  AS p_a,
                   max(poa)  FILTER (WHERE side = 'audited')  AS poa_a
            FROM codes WHERE position = 1
            GROUP BY claim_id, kind
        ),
        secondaries AS (  -- S_o and S_a: the other side's principal taken out
            SELECT c.claim_id, c.kind, c.side, c.position, c.code, c.poa,
                   c.code IS NOT DISTINCT FROM (CASE WHEN c.side = 'original' THEN p.p_a ELSE p.p_o END)
                       AS is_other_principal
            FROM codes c LEFT JOIN principals p ON p.claim_id = c.claim_id AND p.kind = c.kind
            WHERE c.position > 1
        ),
        resequenced AS (
            SELECT DISTINCT claim_id, kind FROM secondaries WHERE is_other_principal
        ),
        principal_rows AS (
            SELECT p.claim_id, p.kind, 'principal' AS role,
                   CASE WHEN p.p_o IS NOT NULL THEN 1 END AS original_position,
                   CASE WHEN p.p_a IS NOT NULL THEN 1 END AS audited_position,
                   p.p_o AS original_code, p.p_a AS audited_code,
                   p.poa_o AS original_poa, p.poa_a AS audited_poa,
                   CASE
                       WHEN p.p_a IS NULL THEN 'deleted'
                       WHEN p.p_o IS NULL THEN 'added'
                       WHEN p.p_o = p.p_a THEN 'match'
                       WHEN r.claim_id IS NOT NULL THEN 'resequenced'
                       WHEN left(p.p_o, 3) = left(p.p_a, 3) THEN 'specificity'
                       ELSE 'changed'
                   END AS result
            FROM principals p
            LEFT JOIN resequenced r ON r.claim_id = p.claim_id AND r.kind = p.kind
        ),
        s_o AS (SELECT * FROM secondaries WHERE side = 'original' AND NOT is_other_principal),
        s_a AS (SELECT * FROM secondaries WHERE side = 'audited' AND NOT is_other_principal),
        compared AS (
            SELECT coalesce(o.claim_id, a.claim_id) AS claim_id, coalesce(o.kind, a.kind) AS kind,
                   o.position AS original_position, a.position AS audited_position,
                   o.code AS original_code, a.code AS audited_code,
                   o.poa AS original_poa, a.poa AS audited_poa
            FROM s_o o FULL JOIN s_a a
              ON a.claim_id = o.claim_id AND a.kind = o.kind AND a.code = o.code
        ),
        in_both AS (
            SELECT claim_id, kind, 'secondary' AS role, original_position, audited_position,
                   original_code, audited_code, original_poa, audited_poa,
                   CASE WHEN original_poa IS NOT DISTINCT FROM audited_poa
                        THEN 'match' ELSE 'poa_changed' END AS result
            FROM compared WHERE original_code IS NOT NULL AND audited_code IS NOT NULL
        ),
        deleted AS (
            SELECT claim_id, kind, original_position, original_code, original_poa,
                   left(original_code, 3) AS category,
                   row_number() OVER (PARTITION BY claim_id, kind, left(original_code, 3)
                                      ORDER BY original_position) AS pair_rank
            FROM compared WHERE audited_code IS NULL
        ),
        added AS (
            SELECT claim_id, kind, audited_position, audited_code, audited_poa,
                   left(audited_code, 3) AS category,
                   row_number() OVER (PARTITION BY claim_id, kind, left(audited_code, 3)
                                      ORDER BY audited_position) AS pair_rank
            FROM compared WHERE original_code IS NULL
        ),
        unmatched AS (
            SELECT coalesce(d.claim_id, a.claim_id) AS claim_id, coalesce(d.kind, a.kind) AS kind,
                   'secondary' AS role,
                   d.original_position, a.audited_position, d.original_code, a.audited_code,
                   d.original_poa, a.audited_poa,
                   CASE WHEN a.claim_id IS NULL THEN 'deleted'
                        WHEN d.claim_id IS NULL THEN 'added'
                        ELSE 'specificity' END AS result
            FROM deleted d FULL JOIN added a
              ON a.claim_id = d.claim_id AND a.kind = d.kind
             AND a.category = d.category AND a.pair_rank = d.pair_rank
        ),
        all_rows AS (
            SELECT * FROM principal_rows
            UNION ALL SELECT * FROM in_both
            UNION ALL SELECT * FROM unmatched
        )
        SELECT claim_id, kind, role,
               CAST(original_position AS INTEGER) AS original_position,
               CAST(audited_position AS INTEGER) AS audited_position,
               original_code, audited_code, original_poa, audited_poa, result
        FROM all_rows
        ORDER BY claim_id, kind, role, coalesce(original_position, audited_position), audited_position
        """
    )
    return con.execute("SELECT count(*) FROM code_diffs").fetchall()[0][0]


def _claim_metric_sql() -> str:
    """Long per-claim facts (claim_id, metric, n, errors) whose sums over any group give the rates."""
    secondary_errors = ", ".join(f"'{r}'" for r in SECONDARY_ERRORS)
    error_types = ", ".join(f"('{k}', '{r}')" for k, r in ERROR_TYPES)
    return f"""
        audited AS {_AUDITED_CLAIMS},
        flags AS (
            SELECT a.claim_id,
                   coalesce(bool_or(d.kind = 'dx' AND d.role = 'principal' AND d.result <> 'match'),
                            false) AS principal_error,
                   coalesce(bool_or(d.kind = 'dx' AND d.role = 'secondary'
                                    AND d.result IN ({secondary_errors})), false) AS secondary_error,
                   coalesce(bool_or(d.kind = 'px' AND d.result NOT IN ('match', 'poa_changed')),
                            false) AS procedure_error,
                   coalesce(bool_or(d.kind = 'dx' AND d.role = 'secondary' AND d.result = 'added'),
                            false) AS omitted
            FROM audited a LEFT JOIN code_diffs d ON d.claim_id = a.claim_id
            GROUP BY a.claim_id
        ),
        claim_rates AS (
            UNPIVOT (
                SELECT claim_id,
                       CAST(principal_error OR secondary_error AS INTEGER) AS record_error_rate,
                       CAST(principal_error AS INTEGER) AS principal_dx_error_rate,
                       CAST(secondary_error AS INTEGER) AS secondary_dx_error_rate,
                       CAST(procedure_error AS INTEGER) AS procedure_error_rate,
                       CAST(omitted AS INTEGER) AS dx_omitted
                FROM flags
            ) ON COLUMNS(* EXCLUDE (claim_id)) INTO NAME metric VALUE errors
        ),
        positions AS (  -- original dx positions present on audited claims
            SELECT DISTINCT cc.claim_id, cc.position
            FROM claim_codes cc SEMI JOIN audited a ON a.claim_id = cc.claim_id
            WHERE cc.side = 'original' AND cc.kind = 'dx' AND cc.code IS NOT NULL
        ),
        unsupported AS (
            SELECT DISTINCT claim_id, original_position AS position
            FROM code_diffs
            WHERE kind = 'dx' AND original_position IS NOT NULL
              AND ((role = 'principal' AND result <> 'match')
                   OR (role = 'secondary' AND result IN ('deleted', 'specificity')))
        ),
        position_rates AS (
            SELECT p.claim_id, 'dx_position_' || p.position AS metric,
                   CAST(u.claim_id IS NOT NULL AS INTEGER) AS errors
            FROM positions p
            LEFT JOIN unsupported u ON u.claim_id = p.claim_id AND u.position = p.position
        ),
        type_counts AS (
            SELECT claim_id, kind, result, count(*) AS errors
            FROM code_diffs GROUP BY claim_id, kind, result
        ),
        type_rates AS (
            SELECT a.claim_id, 'error_type:' || t.kind || ':' || t.result AS metric,
                   coalesce(c.errors, 0) AS errors
            FROM audited a
            CROSS JOIN (VALUES {error_types}) t(kind, result)
            LEFT JOIN type_counts c
              ON c.claim_id = a.claim_id AND c.kind = t.kind AND c.result = t.result
        ),
        claim_metrics AS (
            SELECT claim_id, metric, CAST(errors AS BIGINT) AS errors FROM claim_rates
            UNION ALL SELECT claim_id, metric, errors FROM position_rates
            UNION ALL SELECT claim_id, metric, errors FROM type_rates
        )
    """


def build_error_rates(con) -> int:
    """(Re)create `error_rates` (long form, see module docstring) from `code_diffs`. Returns row count."""
    missing = "'(missing)'"
    grouped = con.execute(
        f"""
        WITH {_claim_metric_sql()},
        claim_groups AS (
            SELECT a.claim_id,
                   coalesce(CAST(c.coder_id AS VARCHAR), {missing}) AS coder,
                   coalesce(CAST(c.facility_id AS VARCHAR), {missing}) AS facility,
                   coalesce(CAST(c.service_line AS VARCHAR), {missing}) AS service_line,
                   coalesce(CAST(c.payer AS VARCHAR), {missing}) AS payer,
                   coalesce(strftime(c.discharge_date, '%Y-%m'), {missing}) AS audit_month
            FROM audited a JOIN claims c ON c.claim_id = a.claim_id
        )
        SELECT m.metric,
               CASE WHEN grouping(g.coder) = 0 THEN 'coder'
                    WHEN grouping(g.facility) = 0 THEN 'facility'
                    WHEN grouping(g.service_line) = 0 THEN 'service_line'
                    WHEN grouping(g.payer) = 0 THEN 'payer'
                    WHEN grouping(g.audit_month) = 0 THEN 'audit_month'
                    ELSE 'all' END AS breakdown,
               coalesce(g.coder, g.facility, g.service_line, g.payer, g.audit_month, 'all')
                   AS breakdown_value,
               count(*) AS n,
               sum(m.errors) AS errors
        FROM claim_metrics m JOIN claim_groups g ON g.claim_id = m.claim_id
        GROUP BY GROUPING SETS ((m.metric), (m.metric, g.coder), (m.metric, g.facility),
                                (m.metric, g.service_line), (m.metric, g.payer),
                                (m.metric, g.audit_month))
        """
    ).df()
    grouped["n"] = grouped["n"].astype("int64")
    grouped["errors"] = grouped["errors"].astype("int64")
    is_count = grouped["metric"].str.startswith("error_type:")
    grouped["rate"] = grouped["errors"] / grouped["n"]
    low, high = wilson_interval(grouped["errors"], grouped["n"])
    grouped["ci_low"] = low.where(~is_count)
    grouped["ci_high"] = high.where(~is_count)
    grouped["small_cell"] = grouped["n"] < SMALL_CELL
    grouped["_m"] = grouped["metric"].map({m: i for i, m in enumerate(METRICS)})
    grouped["_b"] = grouped["breakdown"].map({b: i for i, b in enumerate(BREAKDOWNS)})
    grouped = grouped.sort_values(["_m", "_b", "breakdown_value"], kind="stable")
    error_rates_df = grouped[
        ["metric", "breakdown", "breakdown_value", "n", "errors", "rate", "ci_low", "ci_high", "small_cell"]
    ].reset_index(drop=True)
    con.register("_error_rates_df", error_rates_df)
    try:
        con.execute(
            """
            CREATE OR REPLACE TABLE error_rates AS
            SELECT CAST(metric AS VARCHAR) AS metric, CAST(breakdown AS VARCHAR) AS breakdown,
                   CAST(breakdown_value AS VARCHAR) AS breakdown_value,
                   CAST(n AS BIGINT) AS n, CAST(errors AS BIGINT) AS errors,
                   CAST(rate AS DOUBLE) AS rate,
                   CAST(CASE WHEN isnan(ci_low) THEN NULL ELSE ci_low END AS DOUBLE) AS ci_low,
                   CAST(CASE WHEN isnan(ci_high) THEN NULL ELSE ci_high END AS DOUBLE) AS ci_high,
                   CAST(small_cell AS BOOLEAN) AS small_cell
            FROM _error_rates_df
            """
        )
    finally:
        con.unregister("_error_rates_df")
    return len(error_rates_df)


def build_coder_scorecard(con) -> int:
    """(Re)create `coder_scorecard`: one row per coder with audited claims. Returns its row count.

    Reads `error_rates` (breakdown 'coder'; build it first) for the four rates and their Wilson bounds,
    and `code_diffs` for the most frequent error types (top 3, e.g. 'secondary dx deleted x4') and the
    most frequent changed codes (top 5, e.g. 'E43 deleted x4', 'I5022->I5023 specificity x2').
    match and poa_changed rows are not errors and are left out of both lists. Ties: alphabetical.
    """
    pivots = ",\n".join(
        f"""max(n) FILTER (WHERE metric = '{m}') AS _n_{i},
            max(errors) FILTER (WHERE metric = '{m}') AS {m.removesuffix('_rate')}s,
            max(rate) FILTER (WHERE metric = '{m}') AS {m},
            max(ci_low) FILTER (WHERE metric = '{m}') AS {m.removesuffix('_rate')}_ci_low,
            max(ci_high) FILTER (WHERE metric = '{m}') AS {m.removesuffix('_rate')}_ci_high"""
        for i, m in enumerate(RATE_METRICS)
    )
    rate_columns = ", ".join(
        f"r.{m.removesuffix('_rate')}s, r.{m}, r.{m.removesuffix('_rate')}_ci_low, "
        f"r.{m.removesuffix('_rate')}_ci_high"
        for m in RATE_METRICS
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE coder_scorecard AS
        WITH rates AS (
            SELECT breakdown_value AS coder_id, {pivots}
            FROM error_rates WHERE breakdown = 'coder'
            GROUP BY breakdown_value
        ),
        errors AS (
            SELECT coalesce(CAST(c.coder_id AS VARCHAR), '(missing)') AS coder_id, d.*
            FROM code_diffs d JOIN claims c ON c.claim_id = d.claim_id
            WHERE d.result NOT IN ('match', 'poa_changed')
        ),
        type_counts AS (
            SELECT coder_id, role || ' ' || kind || ' ' || result AS label, count(*) AS k
            FROM errors GROUP BY ALL
        ),
        code_counts AS (
            SELECT coder_id,
                   CASE WHEN result = 'deleted' THEN original_code || ' deleted'
                        WHEN result = 'added' THEN audited_code || ' added'
                        ELSE original_code || '->' || audited_code || ' ' || result END AS label,
                   count(*) AS k
            FROM errors GROUP BY ALL
        ),
        top_types AS (
            SELECT coder_id, string_agg(label || ' x' || k, '; ' ORDER BY k DESC, label) AS top_error_types
            FROM (SELECT * FROM type_counts
                  QUALIFY row_number() OVER (PARTITION BY coder_id ORDER BY k DESC, label) <= 3)
            GROUP BY coder_id
        ),
        top_codes AS (
            SELECT coder_id, string_agg(label || ' x' || k, '; ' ORDER BY k DESC, label) AS top_changed_codes
            FROM (SELECT * FROM code_counts
                  QUALIFY row_number() OVER (PARTITION BY coder_id ORDER BY k DESC, label) <= 5)
            GROUP BY coder_id
        )
        SELECT r.coder_id, CAST(r._n_0 AS BIGINT) AS audited_claims, {rate_columns},
               coalesce(t.top_error_types, '') AS top_error_types,
               coalesce(c.top_changed_codes, '') AS top_changed_codes,
               r._n_0 < {SMALL_CELL} AS small_cell
        FROM rates r
        LEFT JOIN top_types t ON t.coder_id = r.coder_id
        LEFT JOIN top_codes c ON c.coder_id = r.coder_id
        ORDER BY r.coder_id
        """
    )
    return con.execute("SELECT count(*) FROM coder_scorecard").fetchall()[0][0]


def error_rate_summary(con) -> dict:
    """Headline figures for summary.json, from `error_rates` (breakdown 'all').

    Rates are floats rounded to 4 decimals (0.1234 = 12.34%, enough for a percentage with two
    decimals); None when there are no audited claims. `error_rate_by_position` holds "1".."25" for
    positions with at least one audited claim, then "omitted".
    """
    rows = con.execute(
        "SELECT metric, rate FROM error_rates WHERE breakdown = 'all' AND n > 0"
    ).fetchall()
    rates = {metric: (None if rate is None else round(float(rate), 4)) for metric, rate in rows}
    summary: dict = {m: rates.get(m) for m in RATE_METRICS}
    by_position = {
        str(p): rates[f"dx_position_{p}"]
        for p in range(1, MAX_POSITIONS + 1)
        if f"dx_position_{p}" in rates
    }
    if "dx_omitted" in rates:
        by_position["omitted"] = rates["dx_omitted"]
    summary["error_rate_by_position"] = by_position
    return summary
