"""Row-level validation of a staged load with Great Expectations (GX Core 1.x).

Every rule is a GX expectation; rows it finds unexpected go to quarantine with the rule as the
reason, the rest load. GX runs on small pandas frames of distinct values, never on a batch of
every row (`audits.ingest.expectations.check_distinct`): codes once per distinct (kind, code,
MS-DRG version), header values once per distinct raw value, and the rules that are per row by
nature on per-row verdicts computed in DuckDB SQL. Failing values are joined back to their rows
set-based.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from audits.codes import (ICD10CM_PATTERN, ICD10PCS_PATTERN, POA_VALUES, drg_version_sql, normalise_code_sql,
                          normalise_poa_sql)
from audits.contract import AGE_MAX, AGE_MIN, DISCHARGE_STATUS_VALUES, MAX_POSITIONS, SEX_VALUES
from audits.ingest.code_validity import code_validity
from audits.ingest.dates import accepted_formats, parse_date_sql, slash_date_orders  # noqa: F401 - re-exported
from audits.ingest.expectations import (DistinctCheck, Rule, _gx, check_distinct, claims_clause, once, present,
                                        run_expectations)
from audits.staging import STAGE, stage_attached, write_staged
from audits.warehouse import SCHEMA, drop_relation, temp_relation_exists, unordered

# Readers may stage their own findings (stg_<entity>_findings); validation quarantines them.
READER_FINDINGS = True
# Reader findings that reject a record as a whole (a FHIR resource its model rejects): the blanks
# the reader staged for it are not listed as further rejections; the finding is its one row.
WHOLE_RECORD_RULES = ("invalid_fhir_resource",)

# Column of `stg_<entity>_codes` where each code row carries its own row's raw discharge date (the
# wide layout's claims, NULL where the row has no claim_id), so no join dates it.
ROW_DISCHARGE_DATE = "_row_discharge_date"

# The columns of a wide claims file's code rows that only validation reads: the stage's claim_codes
# holds them until publishing drops them (`codes_go_to_stage`).
STAGED_CODE_COLUMNS = ("_source_file", ROW_DISCHARGE_DATE)

REJECTION_COLUMNS = ["entity", "source_file", "row", "claim_id", "column", "rule", "value", "reason"]


def whole_number_sql(column: str) -> str:
    """A whole number written as digits (an optional sign); '70.5', '1e2' or '0x46' are NULL."""
    return f"(CASE WHEN regexp_full_match(trim({column}), '[+-]?[0-9]{{1,9}}') THEN CAST(trim({column}) AS INTEGER) END)"


def discharge_status_sql(column: str) -> str:
    return f"CASE WHEN regexp_full_match({column}, '[0-9]') THEN '0' || {column} ELSE {column} END"


def drg_sql(column: str) -> str:
    return (f"CASE WHEN regexp_full_match({column}, '[0-9]{{1,3}}') THEN lpad({column}, 3, '0') "
            f"ELSE {column} END")


def parse_dates_once(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], orders: dict,
                     name: str) -> None:
    """TEMP table `name` (_source_file, v, t): each distinct text `v` of the date `columns` of
    `table`, per file, and its date `t` as `parse_date_sql` reads it (NULL: not a date). Joined on
    (_source_file, v), it parses a million claims' dates as a few thousand texts."""
    texts = " UNION ".join(f"SELECT DISTINCT _source_file, {c} AS v FROM {table} WHERE {c} IS NOT NULL" for c in columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT _source_file, v, {parse_date_sql('v', orders)} AS t "
                f"FROM ({texts})")


def date_check(column: str, dates: str, ok: str | None = None) -> DistinctCheck:
    """`invalid_date` on the distinct (file, raw value) of `column` (per file: slash dates are read as
    each file proves). `ok` is the SQL verdict, by default the staged `<column>_ok` column."""
    e = _gx().expectations
    keys = {"_source_file": "_source_file", column: column, f"{column}_ok": ok or f"{column}_ok"}
    return DistinctCheck(column, keys, [
        Rule("invalid_date", column, f"{column} is not a date (accepted: {dates})",
             lambda: e.ExpectColumnValuesToBeInSet(column=f"{column}_ok", value_set=[True]))])


def _header_checks(entity: str, dates: str = accepted_formats()) -> list[DistinctCheck]:
    """The header rules, in the order their rejections are listed, each over the distinct values
    (or per-row verdicts) it needs."""
    e = _gx().expectations
    required = (["claim_id", "facility_id", "admit_date", "discharge_date", "discharge_status", "age",
                 "sex", "coder_id"] if entity == "claims" else ["claim_id", "reviewer_id", "review_date"])
    rows = [Rule("required_value_missing", column, f"{column} is required and is blank",
                 lambda c=column: e.ExpectColumnValuesToNotBeNull(column=c)) for column in required]
    rows.append(Rule("principal_dx_missing", "dx1", "dx1 (principal diagnosis) is required and is blank",
                     lambda: e.ExpectColumnValuesToBeInSet(column="has_principal_dx", value_set=[True])))
    if entity == "claims":
        rows.append(Rule("duplicate_claim_id", "claim_id", "claim_id appears more than once in this load",
                         lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True])))
    else:
        rows.append(Rule("duplicate_review", "claim_id",
                         "more than one review for this claim in this load (conflicting or repeated)",
                         lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True])))
    checks = [DistinctCheck("rows", {**{c: present(c) for c in required}, "has_principal_dx": "has_principal_dx",
                                     "claim_id_once": once("claim_id", f"v_{entity}")}, rows)]
    status = DistinctCheck("discharge_status", {"discharge_status": "discharge_status",
                                                "discharge_status_n": "discharge_status_n"}, [
        Rule("invalid_discharge_status", "discharge_status", "discharge_status is not a UB-04 patient status code",
             lambda: e.ExpectColumnValuesToBeInSet(column="discharge_status_n",
                                                   value_set=list(DISCHARGE_STATUS_VALUES)))])
    if entity == "claims":
        checks += [date_check("admit_date", dates), date_check("discharge_date", dates)]
        checks += [
            DistinctCheck("stay", {"admit_date_t": "admit_date_t", "discharge_date_t": "discharge_date_t"}, [
                Rule("discharge_before_admit", "discharge_date", "discharge_date is before admit_date",
                     lambda: e.ExpectColumnPairValuesAToBeGreaterThanB(
                         column_A="discharge_date_t", column_B="admit_date_t", or_equal=True,
                         ignore_row_if="either_value_is_missing"))]),
            DistinctCheck("age", {"age": "age", "age_ok": "age_ok", "age_t": "age_t"}, [
                Rule("invalid_age", "age", "age is not a whole number of years",
                     lambda: e.ExpectColumnValuesToBeInSet(column="age_ok", value_set=[True])),
                Rule("age_out_of_range", "age", f"age is outside {AGE_MIN}-{AGE_MAX}",
                     lambda: e.ExpectColumnValuesToBeBetween(column="age_t", min_value=AGE_MIN,
                                                             max_value=AGE_MAX))]),
            DistinctCheck("sex", {"sex": "sex", "sex_n": "sex_n"}, [
                Rule("invalid_sex", "sex", "sex must be M, F or U",
                     lambda: e.ExpectColumnValuesToBeInSet(column="sex_n", value_set=list(SEX_VALUES)))]),
            status,
            DistinctCheck("billed_drg", {"billed_drg": "billed_drg", "billed_drg_n": "billed_drg_n"}, [
                Rule("invalid_billed_drg", "billed_drg", "billed_drg is not a 3-digit MS-DRG",
                     lambda: e.ExpectColumnValuesToMatchRegex(column="billed_drg_n", regex=r"^[0-9]{3}$"))]),
        ]
    else:
        checks += [
            date_check("review_date", dates),
            status,
            DistinctCheck("claim", {"claim_known": "claim_known", "claim_rejected": "claim_rejected"}, [
                Rule("review_without_claim", "claim_id", "no claim with this claim_id was loaded",
                     lambda: e.ExpectColumnValuesToBeInSet(column="claim_known", value_set=[True])),
                Rule("claim_rejected", "claim_id", "the claim of this review was rejected in this load",
                     lambda: e.ExpectColumnValuesToBeInSet(column="claim_rejected", value_set=[False]))]),
        ]
    return checks


def _code_rules() -> list[Rule]:
    e = _gx().expectations
    return [
        Rule("invalid_code_format", "code", "not shaped like an ICD-10-CM diagnosis code",
             lambda: e.ExpectColumnValuesToMatchRegex(column="dx_code", regex=ICD10CM_PATTERN)),
        Rule("invalid_code_format", "code", "not shaped like an ICD-10-PCS procedure code",
             lambda: e.ExpectColumnValuesToMatchRegex(column="px_code", regex=ICD10PCS_PATTERN)),
        Rule("code_not_valid_for_discharge_date", "code",
             "not a valid code on the discharge date (CMS Medicare Code Editor)",
             lambda: e.ExpectColumnValuesToBeInSet(column="valid_for_date", value_set=[True])),
    ]


def _code_row_checks(layout_long: bool) -> list[tuple[DistinctCheck, str, str]]:
    """Rules over code rows, each on the distinct values (or per-row verdicts) of its key:
    (check, the column named in the rejection, the rejected value), both SQL over the row `c`.
    The wide layout's positions are its column numbers: only POA is checked there."""
    e = _gx().expectations
    poa = (DistinctCheck("poa", {"poa": "poa"}, [
        Rule("invalid_poa", "poa", "POA must be Y, N, U, W, 1 or blank",
             lambda: e.ExpectColumnValuesToBeInSet(column="poa", value_set=list(POA_VALUES)))], "kind = 'dx'"),
        "'poa'" if layout_long else "'poa' || c.position_t", "c.poa_raw")
    if not layout_long:
        return [poa]
    return [poa,
            (DistinctCheck("position", {"position_t": "position_t"}, [
                Rule("invalid_position", "position", f"position must be a whole number 1-{MAX_POSITIONS}",
                     lambda: e.ExpectColumnValuesToBeBetween(column="position_t", min_value=1,
                                                             max_value=MAX_POSITIONS)),
                Rule("invalid_position", "position", "position is missing or not a whole number",
                     lambda: e.ExpectColumnValuesToNotBeNull(column="position_t"))]), "'position'", "c.position_raw"),
            (DistinctCheck("duplicate", {"position_once": "count(*) OVER (PARTITION BY claim_id, kind, position_t) = 1"}, [
                Rule("duplicate_position", "position", "two codes at the same position of one claim",
                     lambda: e.ExpectColumnValuesToBeInSet(column="position_once", value_set=[True]))],
                "position_t IS NOT NULL"), "'position'", "c.position_raw"),
            (DistinctCheck("header", {"has_header": "has_header"}, [
                Rule("code_without_claim", "claim_id", "code row for a claim_id not in the header file",
                     lambda: e.ExpectColumnValuesToBeInSet(column="has_header", value_set=[True]))]),
             "'claim_id'", "c.claim_id")]


def _validate_code_rows(con: duckdb.DuckDBPyConnection, entity: str, layout_long: bool) -> pd.DataFrame:
    out = [check_distinct(con, f"v_{entity}_codes" if "has_header" in check.keys else f"{entity}_code_keys", [check],
                          f'c._source_file, c._source_row, c.claim_id, {column} AS "column", f.rule, '
                          f"{value} AS value, f.reason", "c._source_file, c._source_row",
                          rows_table=f"v_{entity}_codes" if "has_header" in check.keys else f"v_{entity}_code_rows",
                          rows_by_claim="has_header" not in check.keys)
           for check, column, value in _code_row_checks(layout_long)]
    columns = ["_source_file", "_source_row", "claim_id", "column", "rule", "value", "reason"]
    out = [frame for frame in out if len(frame)]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


# Layouts whose accepted claims cannot repeat a code position: the wide layout has one row per
# claim (a repeated claim_id is rejected) and the long layout's repeated positions are rejected.
UNIQUE_POSITION_LAYOUTS = ("wide", "long")


def validate_load(con: duckdb.DuckDBPyConnection, published_claims: str | None = "claims",
                  date_format: str | None = None, warnings: list | None = None,
                  layouts: dict[str, str] | None = None, stage: dict | None = None) -> pd.DataFrame:
    """Validate the staged load; create `ok_claims`, `ok_reviews`, `ok_<entity>_codes` (typed,
    normalised, accepted; `ok_claims` in the stage when `stage` is given, see `accept_rows`) and
    return the rejections (one row per failed rule and row). Slash dates are read as each file
    proves or `date_format` says (`audits.ingest.dates`); what that resolved is appended to
    `warnings`. `layouts` ({entity: layout} as staged) spares the wide and long layouts the
    de-duplication of code positions other readers' rows may need."""
    orders = {entity: slash_date_orders(con, f"stg_{entity}", columns, date_format, warnings)
              for entity, columns in (("claims", ["admit_date", "discharge_date"]), ("reviews", ["review_date"]))}
    layouts = layouts or {}
    rejections = [_validate_entity(con, entity, published_claims, orders[entity], layouts.get(entity), stage)
                  for entity in ("claims", "reviews")]
    # The claims' typed rows (as many as the claims, ~27 columns) were read last by the reviews'
    # checks: dropped now, they do not take DuckDB's memory (or spill) for the rest of the load.
    drop_relation(con, "v_claims")
    return pd.concat(rejections, ignore_index=True)[REJECTION_COLUMNS]


def accept_rows(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, stage: dict | None) -> None:
    """`ok_<table>`: the load's accepted rows of warehouse `table`, as `select_sql` gives them (its
    columns but the period and load id). With `stage` ({"p": audit period, "l": load id}) they are
    written once, straight into the stage's `table` with the warehouse's types, and `ok_<table>` is
    a view of them: a TEMP table copied into the stage at publishing was a second write of every
    claim (0.5 s a million) and, past DuckDB's memory limit (1.5 GB at 9M claims), spilled to disk.
    Without a stage (a universe read to draw a sample) `ok_<table>` is a TEMP table."""
    drop_relation(con, f"ok_{table}")
    if stage is None:
        con.execute(f"CREATE TEMP TABLE ok_{table} AS {select_sql}")
        return
    with unordered(con):  # published tables are read by key, never by order
        write_staged(con, table, f"SELECT *, $p AS audit_period, $l AS load_id FROM ({select_sql})",
                     SCHEMA[table], stage)
    con.execute(f"CREATE TEMP VIEW ok_{table} AS SELECT * EXCLUDE (audit_period, load_id) FROM {STAGE}.main.{table}")


def codes_go_to_stage(con: duckdb.DuckDBPyConnection, entity: str) -> bool:
    """The code rows of wide claims files (staged as `stg_claims_code_keys`; about 8 per claim, the
    load's largest table) are written once, into the stage's claim_codes itself, with the
    STAGED_CODE_COLUMNS validation reads; publishing then deletes the rejected claims' rows and
    drops those columns. Written to a TEMP table and then copied, they cost 1.7 s more a million
    claims, and 25 s at 9M claims."""
    return entity == "claims" and temp_relation_exists(con, "stg_claims_code_keys") and stage_attached(con)


def unpublished_code_rows_sql(entity: str) -> str:
    """The code rows of a wide file that are not published: those without a claim_id and those of
    a rejected claim (`<entity>_rejected_ids`, few). The accepted rows (`ok_<entity>_codes`) are
    the rest; publishing deletes these from the stage's claim_codes (`codes_go_to_stage`)."""
    return f"claim_id IS NULL OR claim_id IN (SELECT claim_id FROM {entity}_rejected_ids)"


def _validate_entity(con: duckdb.DuckDBPyConnection, entity: str, published_claims: str | None,
                     orders: dict | None = None, layout: str | None = None,
                     stage: dict | None = None) -> pd.DataFrame:
    orders = orders or {}
    unique_positions = layout in UNIQUE_POSITION_LAYOUTS
    codes_tbl = f"stg_{entity}_codes"
    # Code rows that carry their own row's discharge date (the wide layout's claims) are dated by
    # it, without a join.
    own_dates = ROW_DISCHARGE_DATE in {r[0] for r in con.execute(f"DESCRIBE {codes_tbl}").fetchall()}
    # Codes: normalise, attach the discharge date that decides their validity.
    if entity == "claims":
        date_source = f"(SELECT claim_id, {parse_date_sql('discharge_date', orders)} AS discharge_date FROM stg_claims)"
    else:
        published = (f"UNION ALL SELECT claim_id, discharge_date FROM {published_claims}"
                     if published_claims else "")
        # Only the claims this load's code rows name (a review load is small beside the claims).
        date_source = (f"(SELECT claim_id, discharge_date FROM (SELECT claim_id, discharge_date FROM ok_claims "
                       f"{published}) SEMI JOIN (SELECT DISTINCT claim_id FROM {codes_tbl}) USING (claim_id))")
    # Per claim, not per code row: the discharge date and MS-DRG version (one small table); for
    # claims the date source is the header file itself, so a claim with a date row has a header row.
    # The code rows (~10 per claim) are normalised into one table of what the rules and publishing
    # read (`<entity>_code_keys`); the view `v_<entity>_code_rows` has every column, for naming
    # the file, row and raw value of the few that fail, and `v_<entity>_codes` adds the dates.
    header = ("d.claim_id IS NOT NULL" if entity == "claims" else
              f"coalesce(c.claim_id IN (SELECT claim_id FROM stg_{entity}), false)")
    if not own_dates:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {entity}_code_dates AS
            SELECT claim_id, discharge_date, {drg_version_sql('discharge_date')} AS drg_version
            FROM (SELECT DISTINCT ON (claim_id) claim_id, discharge_date FROM {date_source})""")
    normalised = f"""
        SELECT c.* EXCLUDE (code), c.code, {normalise_poa_sql('c.poa_raw')} AS poa, c.position AS position_t
        FROM (SELECT *, {normalise_code_sql('code_raw')} AS code FROM {codes_tbl}) c
        WHERE c.code IS NOT NULL OR c.position IS NULL"""
    con.execute(f"CREATE OR REPLACE TEMP VIEW v_{entity}_code_rows AS {normalised}")
    # A reader may stage the same rows already normalised (the wide layout does, faster).
    keys = f"stg_{entity}_code_keys" if temp_relation_exists(con, f"stg_{entity}_code_keys") else f"({normalised})"
    columns = f"claim_id, kind, position_t, code, poa, _source_file{f', {ROW_DISCHARGE_DATE}' if own_dates else ''}"
    drop_relation(con, f"{entity}_code_keys")
    with unordered(con):  # the one copy of the code rows: the rules and publishing read them by key
        if codes_go_to_stage(con, entity):
            con.execute(f"""
                CREATE OR REPLACE TABLE {STAGE}.main.claim_codes AS
                SELECT claim_id, 'original' AS side, kind, position_t AS position, code, poa,
                       {", ".join(STAGED_CODE_COLUMNS)}
                FROM {keys}""")
            con.execute(f"CREATE TEMP VIEW {entity}_code_keys AS SELECT {columns} FROM "
                        f"(SELECT *, position AS position_t FROM {STAGE}.main.claim_codes)")
        else:
            con.execute(f"CREATE TEMP TABLE {entity}_code_keys AS SELECT {columns} FROM {keys}")
    if own_dates:
        row_date = parse_date_sql(ROW_DISCHARGE_DATE, orders)
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW v_{entity}_codes AS
            SELECT c.*, {row_date} AS discharge_date, {drg_version_sql(row_date)} AS drg_version,
                   c.claim_id IS NOT NULL AS has_header
            FROM v_{entity}_code_rows c""")
    else:
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW v_{entity}_codes AS
            SELECT c.*, d.discharge_date, d.drg_version, {header} AS has_header
            FROM v_{entity}_code_rows c LEFT JOIN {entity}_code_dates d USING (claim_id)""")
    code_failures = _validate_codes(con, entity, orders if own_dates else None)
    if layout in UNIQUE_POSITION_LAYOUTS:
        layout_long = layout == "long"
    else:  # readers of other layouts may name a long file's columns
        layout_long = con.execute(f"SELECT EXISTS (SELECT 1 FROM {codes_tbl} "
                                  "WHERE _source_column IN ('code', 'position'))").fetchall()[0][0]
    row_failures = _validate_code_rows(con, entity, layout_long)
    code_level = pd.concat([code_failures, row_failures], ignore_index=True)

    # Header rows: per-row values and verdicts in SQL; GX on their distinct values (`check_distinct`).
    # `_staged_order`: the order rows were staged (a reader staging a view numbers them itself).
    # `_has_principal_dx`: a reader staging one row per claim with its codes (the wide layout) says
    # whether the row's dx1 holds a code; otherwise the claim is looked up among the code rows.
    staged = [r[0] for r in con.execute(f"DESCRIBE stg_{entity}").fetchall()]
    order = "" if "_staged_order" in staged else ", s.rowid AS _staged_order"
    principal = ("s.claim_id IS NULL OR s._has_principal_dx" if "_has_principal_dx" in staged else
                 f"""s.claim_id IS NULL OR s.claim_id IN (SELECT claim_id FROM {entity}_code_keys
                     WHERE kind = 'dx' AND position_t = 1 AND claim_id IS NOT NULL)""")
    if entity == "claims":
        parse_dates_once(con, "stg_claims", ["admit_date", "discharge_date"], orders, "claims_dates")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE v_claims AS
            SELECT *, admit_date IS NULL OR admit_date_t IS NOT NULL AS admit_date_ok,
                   discharge_date IS NULL OR discharge_date_t IS NOT NULL AS discharge_date_ok,
                   age IS NULL OR age_t IS NOT NULL AS age_ok
            FROM (SELECT s.*{order}, a.t AS admit_date_t, d.t AS discharge_date_t,
                         {whole_number_sql('age')} AS age_t,
                         upper(sex) AS sex_n, {discharge_status_sql('discharge_status')} AS discharge_status_n,
                         {drg_sql('billed_drg')} AS billed_drg_n,
                         {principal} AS has_principal_dx
                  FROM stg_claims s
                  LEFT JOIN claims_dates a ON a._source_file = s._source_file AND a.v = s.admit_date
                  LEFT JOIN claims_dates d ON d._source_file = s._source_file AND d.v = s.discharge_date)""")
    else:
        # The claims the reviews name, looked up in each source first (a semi join probing millions
        # of claims with the few reviewed ids), so the IN lists below are a few thousand ids, not a
        # hash of every claim per list. One list per source, not one over their UNION.
        con.execute("CREATE OR REPLACE TEMP TABLE reviewed_ids AS "
                    "SELECT DISTINCT claim_id FROM stg_reviews WHERE claim_id IS NOT NULL")
        for name, source in (("reviewed_ok", "ok_claims"), ("reviewed_staged", "v_claims"),
                             ("reviewed_published", published_claims)):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT claim_id FROM "
                        + (f"{source} SEMI JOIN reviewed_ids USING (claim_id)" if source else
                           "reviewed_ids WHERE false"))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE v_reviews AS
            SELECT s.*{order}, {parse_date_sql('review_date', orders)} AS review_date_t,
                   review_date IS NULL OR {parse_date_sql('review_date', orders)} IS NOT NULL AS review_date_ok,
                   {discharge_status_sql('discharge_status')} AS discharge_status_n,
                   {drg_sql('reviewer_drg')} AS reviewer_drg_n,
                   s.claim_id IS NULL OR s.claim_id IN (SELECT claim_id FROM reviewed_ok)
                       OR s.claim_id IN (SELECT claim_id FROM reviewed_published)
                       OR s.claim_id IN (SELECT claim_id FROM reviewed_staged) AS claim_known,
                   s.claim_id IN (SELECT claim_id FROM reviewed_staged)
                       AND s.claim_id NOT IN (SELECT claim_id FROM reviewed_ok)
                       AND s.claim_id NOT IN (SELECT claim_id FROM reviewed_published) AS claim_rejected,
                   {principal} AS has_principal_dx
            FROM stg_reviews s""")
    # The rejected value is the row's own text in the rule's column (none for dx1: codes are apart).
    not_values = ("_source_file", "_source_row", "_staged_order", "_has_principal_dx", "extra_columns")
    value = " ".join(f"WHEN '{c}' THEN CAST(c.\"{c}\" AS VARCHAR)" for c in staged if c not in not_values)
    header_failures = check_distinct(
        con, f"v_{entity}", _header_checks(entity, accepted_formats(orders)),
        f'c._source_file, c._source_row, c.claim_id, f."column", f.rule, CASE f."column" {value} END AS value, '
        "f.reason", "c._staged_order")
    findings = _reader_findings(con, entity)
    whole = findings[findings["rule"].isin(WHOLE_RECORD_RULES)]
    if len(whole) and len(header_failures):
        rows = pd.MultiIndex.from_frame(whole[["_source_file", "_source_row"]])
        keep = ~pd.MultiIndex.from_frame(header_failures[["_source_file", "_source_row"]]).isin(rows)
        header_failures = header_failures[keep]
    failures = pd.concat([header_failures, code_level, findings], ignore_index=True)
    failures.insert(0, "entity", entity)
    failures = failures.rename(columns={"_source_file": "source_file", "_source_row": "row"})
    con.register("failed_now", failures[["claim_id"]].dropna().drop_duplicates())
    if entity == "claims":
        accept_rows(con, "claims", f"""
            SELECT claim_id, facility_id, patient_id, admit_date_t AS admit_date,
                   discharge_date_t AS discharge_date, discharge_status_n AS discharge_status,
                   age_t AS age, sex_n AS sex, payer, coder_id, service_line, billed_drg_n AS billed_drg,
                   {drg_version_sql('discharge_date_t')} AS drg_version,
                   _source_file AS source_file, _source_row AS source_row, extra_columns
            FROM v_claims ANTI JOIN failed_now USING (claim_id) WHERE claim_id IS NOT NULL""", stage)
    else:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE ok_reviews AS
            SELECT claim_id, reviewer_id, review_date_t AS review_date, discharge_status_n AS discharge_status,
                   reviewer_drg_n AS reviewer_drg, notes,
                   _source_file AS source_file, _source_row AS source_row, extra_columns
            FROM v_reviews ANTI JOIN failed_now USING (claim_id) WHERE claim_id IS NOT NULL""")
    # A view: the accepted code rows are written once, where the load stages them for publishing.
    # A wide file's code rows come from its header rows, so theirs are the claims not rejected:
    # checked against the few rejected, not joined with every accepted claim.
    con.execute(f"CREATE OR REPLACE TEMP TABLE {entity}_rejected_ids AS SELECT claim_id FROM failed_now")
    accepted = (f"WHERE ({unpublished_code_rows_sql(entity)}) IS NOT TRUE AND" if layout == "wide"
                else f"SEMI JOIN ok_{entity} USING (claim_id) WHERE")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW ok_{entity}_codes AS
        SELECT {"" if unique_positions else "DISTINCT ON (claim_id, kind, position_t)"}
               claim_id, kind, position_t AS position, code, CASE WHEN kind = 'dx' THEN poa END AS poa
        FROM {entity}_code_keys {accepted} code IS NOT NULL""")
    con.unregister("failed_now")
    return failures


def _reader_findings(con: duckdb.DuckDBPyConnection, entity: str) -> pd.DataFrame:
    """Problems a reader found while mapping its layout (e.g. lines of one claim that disagree on
    a header field), staged as `stg_<entity>_findings`: quarantined like any failed rule."""
    columns = ["_source_file", "_source_row", "claim_id", "column", "rule", "value", "reason"]
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                         [f"stg_{entity}_findings"]).fetchall()[0][0]
    if not exists:
        return pd.DataFrame(columns=columns)
    return con.execute("SELECT " + ", ".join(f'"{c}"' for c in columns) + f" FROM stg_{entity}_findings").df()


def _validate_codes(con: duckdb.DuckDBPyConnection, entity: str, own_dates: dict | None = None) -> pd.DataFrame:
    """Shape and validity of each distinct (kind, code, version), then joined back to the rows.
    `own_dates` (the slash-date orders) where the code rows carry their row's discharge date: the
    distinct (code, raw date) come first, each date parsed once."""
    if own_dates is None:
        source = f"""SELECT kind, code, d.drg_version, d.discharge_date
                     FROM {entity}_code_keys LEFT JOIN {entity}_code_dates d USING (claim_id) WHERE code IS NOT NULL"""
    else:
        date = parse_date_sql(ROW_DISCHARGE_DATE, own_dates)
        source = f"""
            SELECT kind, code, {drg_version_sql('discharge_date')} AS drg_version, discharge_date
            FROM (SELECT kind, code, {date} AS discharge_date
                  FROM (SELECT DISTINCT kind, code, _source_file, {ROW_DISCHARGE_DATE}
                        FROM {entity}_code_keys WHERE code IS NOT NULL))"""
    distinct = con.execute(f"""
        SELECT kind, code, drg_version, min(discharge_date) AS discharge_date
        FROM ({source}) GROUP BY ALL""").df()
    distinct["dx_code"] = distinct["code"].where(distinct["kind"] == "dx")
    distinct["px_code"] = distinct["code"].where(distinct["kind"] == "px")
    distinct["valid_for_date"] = code_validity(distinct)
    failed = run_expectations(f"{entity}_codes", distinct, _code_rules(), ["kind", "code", "drg_version"])
    if failed.empty:
        return pd.DataFrame(columns=["_source_file", "_source_row", "claim_id", "column", "rule", "value", "reason"])
    con.register("failed_codes", failed)
    rows = con.execute(f"""
        SELECT c._source_file, c._source_row, c.claim_id, c._source_column AS "column", f.rule,
               c.code_raw AS value, f.reason
        FROM v_{entity}_codes c
        JOIN failed_codes f ON f.kind = c.kind AND f.code = c.code
             AND f.drg_version IS NOT DISTINCT FROM c.drg_version
        {_claims_holding_failed_codes(con, entity)}
        ORDER BY c.kind, c._source_file, c._source_row, c.position_t""").df()
    con.unregister("failed_codes")
    return rows


def _claims_holding_failed_codes(con: duckdb.DuckDBPyConnection, entity: str) -> str:
    """`claims_clause` for the claims that hold a failed (kind, code), from the code rows' table."""
    return claims_clause([r[0] for r in con.execute(f"""
        SELECT DISTINCT claim_id FROM {entity}_code_keys
        SEMI JOIN (SELECT DISTINCT kind, code FROM failed_codes) USING (kind, code)""").fetchall()])
