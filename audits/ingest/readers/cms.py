"""CMS CCW / BFD inpatient claims (RIF layout) + the beneficiary file (age, sex).

Column names are matched case-insensitively (CCW extracts come upper case); files may be comma- or
pipe-delimited (BFD RIF files are '|'), CSV or Parquet. RIF inpatient files carry one row per
revenue-center line (clm_line_num); the claim fields repeat on each line and are taken once per
claim, and lines that disagree on one are a finding (the claim is quarantined), as for Tuva.
Claims whose final_action is 'N' (not final, superseded) are skipped; if clm_fac_type_cd and
clm_srvc_clsfctn_type_cd are present, only hospital inpatient claims (bill type 11x/12x) are read.

Mapping (RIF -> contract):

| contract | CMS |
|---|---|
| claim_id | clm_id |
| facility_id | prvdr_num (the CCN, as in CMS's provider files used for peer comparisons), else org_npi_num |
| patient_id | bene_id |
| admit_date | clm_admsn_dt, else clm_from_dt |
| discharge_date | nch_bene_dschrg_dt, else clm_thru_dt |
| discharge_status | ptnt_dschrg_stus_cd |
| age | whole years from the beneficiary file's bene_birth_dt to the admission date |
| sex | bene_sex_ident_cd: 1 M, 2 F, 0 U |
| payer | 'MEDICARE' (Medicare fee-for-service claims) |
| coder_id | a `coder_id` column if present, else 'UNKNOWN' |
| billed_drg | clm_drg_cd, zero-padded to 3 |
| dx1..dx25, poa1..poa25 | icd_dgns_cd1..25, clm_poa_ind_sw1..25; dx1 from prncpal_dgns_cd when icd_dgns_cd1 is blank (CCW repeats the principal in both; a row where they differ is a finding) |
| dx after the last of those | icd_dgns_e_cd1..12 (external causes of injury; fst_dgns_e_cd when icd_dgns_e_cd1 is blank), POA clm_e_poa_ind_sw1..12, in order, as claims processing passes them to the grouper; past 25 diagnoses in all the claim is quarantined (too_many_dx) |
| px1..px25 | icd_prcdr_cd1..25 |

Dates are read as CCW/BFD write them (15-JAN-2016) or ISO / YYYYMMDD. extra_columns: paid_amount
(clm_pmt_amt, a claim-level amount taken once, not summed over lines), total_charge
(clm_tot_chrg_amt), org_npi_num, admitting_dx (admtg_dgns_cd), claim_lines, px{n}_date (prcdr_dt{n}).

Reviews in this layout: reviewer_id from a `reviewer_id` column, else 'UNKNOWN'; review_date from a
`review_date` column, else nch_wkly_proc_dt (when the re-coded claim was processed);
reviewer_drg = clm_drg_cd; discharge_status = ptnt_dschrg_stus_cd; notes from a `notes` column.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.codes import normalise_code_sql
from audits.ingest.readers.base import FileRead
from audits.ingest.readers.tuva import EXTERNAL_CAUSES, POSITIONS, LineLayout, col, drg_pad_sql, stage_claim_lines

EXTRA_FIELDS = ("paid_amount", "total_charge", "org_npi_num", "admitting_dx")

_SOURCE_NAMES = {
    "facility_id": "prvdr_num", "patient_id": "bene_id", "admit_date": "clm_admsn_dt",
    "discharge_date": "nch_bene_dschrg_dt", "discharge_status": "ptnt_dschrg_stus_cd", "payer": "payer",
    "coder_id": "coder_id", "service_line": "service_line", "billed_drg": "clm_drg_cd",
    "reviewer_id": "reviewer_id", "review_date": "review_date", "reviewer_drg": "clm_drg_cd",
    "notes": "notes", "person_key": "bene_id", "birth_date": "bene_birth_dt", "sex_code": "bene_sex_ident_cd",
    "paid_amount": "clm_pmt_amt", "total_charge": "clm_tot_chrg_amt", "org_npi_num": "org_npi_num",
    "admitting_dx": "admtg_dgns_cd",
}


def _source_name(name: str) -> str:
    if name[:2] == "dx" and name[2:].isdigit():
        return "icd_dgns_cd" + name[2:]
    if name[:2] == "px" and name[2:].isdigit():
        return "icd_prcdr_cd" + name[2:]
    if name.startswith("poa") and name[3:].isdigit():
        return "clm_poa_ind_sw" + name[3:]
    if name.startswith("pxdate"):
        return "prcdr_dt" + name[6:]
    if name.startswith("edx"):
        return "icd_dgns_e_cd" + name[3:]
    if name.startswith("epoa"):
        return "clm_e_poa_ind_sw" + name[4:]
    return _SOURCE_NAMES.get(name, name)


def date_sql(expr: str) -> str:
    """CCW/BFD dates ('15-JAN-2016') to ISO text; other spellings left for validation to parse."""
    return f"coalesce(strftime(try_strptime({expr}, '%d-%b-%Y'), '%Y-%m-%d'), {expr})"


def _sex_sql(expr: str) -> str:
    return (f"CASE trim({expr}) WHEN '1' THEN 'M' WHEN '2' THEN 'F' WHEN '0' THEN 'U' "
            f"ELSE upper(trim({expr})) END")


def _line_select(columns: list[str], entity: str) -> dict[str, str]:
    c = lambda *names: col(columns, *names)  # noqa: E731
    drg = drg_pad_sql(c("clm_drg_cd"))
    out = {
        "claim_id": c("clm_id"), "line_key": c("clm_line_num"), "line_amount": "CAST(NULL AS VARCHAR)",
        "person_key": c("bene_id"), "birth_date": date_sql(c("bene_birth_dt")),
        "sex_code": _sex_sql(c("bene_sex_ident_cd")),
        "discharge_status": c("ptnt_dschrg_stus_cd"),
        "paid_amount": c("clm_pmt_amt"), "total_charge": c("clm_tot_chrg_amt"),
        "org_npi_num": c("org_npi_num"), "admitting_dx": c("admtg_dgns_cd"),
    }
    if entity == "claims":
        out.update({
            "facility_id": f"coalesce({c('prvdr_num')}, {c('org_npi_num')})", "patient_id": c("bene_id"),
            "admit_date": date_sql(f"coalesce({c('clm_admsn_dt')}, {c('clm_from_dt')})"),
            "discharge_date": date_sql(f"coalesce({c('nch_bene_dschrg_dt')}, {c('clm_thru_dt')})"),
            "payer": "'MEDICARE'", "coder_id": c("coder_id"), "service_line": c("service_line"),
            "billed_drg": drg,
        })
    else:
        out.update({
            "reviewer_id": c("reviewer_id"),
            "review_date": date_sql(f"coalesce({c('review_date')}, {c('nch_wkly_proc_dt')})"),
            "reviewer_drg": drg, "notes": c("notes"),
        })
    for p in POSITIONS:
        out[f"dx{p}"] = c(f"icd_dgns_cd{p}")
        out[f"poa{p}"] = c(f"clm_poa_ind_sw{p}")
        out[f"px{p}"] = c(f"icd_prcdr_cd{p}")
        out[f"pxdate{p}"] = date_sql(c(f"prcdr_dt{p}"))
    out["dx1"] = f"coalesce({c('icd_dgns_cd1')}, {c('prncpal_dgns_cd')})"
    for k in EXTERNAL_CAUSES:
        out[f"edx{k}"] = c(f"icd_dgns_e_cd{k}")
        out[f"epoa{k}"] = c(f"clm_e_poa_ind_sw{k}")
    out["edx1"] = f"coalesce({c('icd_dgns_e_cd1')}, {c('fst_dgns_e_cd')})"
    return out


def _line_filter(columns: list[str], raw: str) -> list[tuple[str, str]]:
    conditions = []
    if "final_action" in columns:
        conditions.append(("not_final_action", "coalesce(upper(trim(final_action)), 'F') <> 'N'"))
    if "clm_fac_type_cd" in columns and "clm_srvc_clsfctn_type_cd" in columns:
        conditions.append(("not_inpatient",
                           f"clm_id IN (SELECT clm_id FROM {raw} WHERE trim(clm_fac_type_cd) = '1' "
                           "AND trim(clm_srvc_clsfctn_type_cd) IN ('1', '2'))"))
    return conditions


def _line_checks(columns: list[str]) -> list[tuple[str, str, str, str]]:
    """CCW carries the principal diagnosis twice (prncpal_dgns_cd and icd_dgns_cd1): if a row
    gives two different codes, which one was billed is unknown."""
    if "prncpal_dgns_cd" not in columns or "icd_dgns_cd1" not in columns:
        return []
    a, b = normalise_code_sql("prncpal_dgns_cd"), normalise_code_sql("icd_dgns_cd1")
    return [(f"{a} IS NOT NULL AND {b} IS NOT NULL AND {a} <> {b}", "prncpal_dgns_cd",
             "prncpal_dgns_cd || ' | ' || icd_dgns_cd1",
             "prncpal_dgns_cd and icd_dgns_cd1 (both the principal diagnosis) differ on this row; "
             "the claim is quarantined rather than one of them picked")]


def _people_select(columns: list[str]) -> dict[str, str]:
    return {"person_key": col(columns, "bene_id"), "birth_date": date_sql(col(columns, "bene_birth_dt")),
            "sex_code": _sex_sql(col(columns, "bene_sex_ident_cd")),
            "order": date_sql(col(columns, "bene_enrollmt_ref_yr", "rfrnc_yr"))}


def _delim(path: Path) -> str:
    if path.suffix.lower() in (".parquet", ".pq"):
        return ","
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8-sig", errors="replace")
    return "|" if first.count("|") > first.count(",") else ","


CMS = LineLayout(
    name="cms",
    is_lines=lambda cols: "clm_id" in cols and bool({"icd_dgns_cd1", "prncpal_dgns_cd"} & set(cols)),
    is_people=lambda cols: "bene_id" in cols and "bene_birth_dt" in cols and "clm_id" not in cols,
    line_select=_line_select,
    line_filter=_line_filter,
    source_name=_source_name,
    people_select=_people_select,
    people_hint="CMS beneficiary (bene_id, bene_birth_dt, bene_sex_ident_cd)",
    delim=_delim,
    line_checks=_line_checks,
)


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    """Stage CMS inpatient RIF (+ beneficiary) files as `entity` ('claims' or 'reviews')."""
    return stage_claim_lines(con, entity, paths, CMS, EXTRA_FIELDS)
