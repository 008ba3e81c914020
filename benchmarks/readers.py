"""Benchmark: each input reader on N claims (default 100,000) against the canonical CSV reader.

The claims come from `audits.demo.generate.generate_demo` (canonical wide CSV); small writers below turn
them into each layout the way its producers lay them out:

- tuva: medical_claim with two lines per claim (header repeated on both, paid amount split)
  + eligibility (one person per claim);
- cms: pipe-delimited RIF, upper-case names, DD-MON-YYYY dates, two lines per claim
  + a beneficiary file;
- x12: 837I, one billing provider and one subscriber HL per claim, transactions of 5,000 claims
  (the TR3's recommended maximum);
- fhir: NDJSON of CARIN BB inpatient EOBs + their Patient and Organization resources.

For each reader it times staging alone (read + map into the staging tables: what the reader
itself costs) and the whole `audits.ingest.loading.load` (stage + GX validation + publish: what a user
waits for), in a fresh in-memory DuckDB, and prints claims/s and the ratio to canonical.

    .venv/bin/python benchmarks/readers.py [--claims 100000] [--keep DIR] [--only tuva,cms]

Target (issue 7): no reader more than 3x slower than the canonical CSV reader, except 837I.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from audits.contract import MAX_POSITIONS  # noqa: E402

P = range(1, MAX_POSITIONS + 1)


# ---------------------------------------------------------------------------------------------
# Writers: canonical claims.csv -> each layout
# ---------------------------------------------------------------------------------------------

def write_tuva(con: duckdb.DuckDBPyConnection, out: Path) -> list[Path]:
    dx = ", ".join(f"dx{p} AS diagnosis_code_{p}, poa{p} AS diagnosis_poa_{p}" for p in P)
    px = ", ".join(f"px{p} AS procedure_code_{p}" for p in P)
    lines = f"""
        SELECT claim_id, line AS claim_line_number, 'institutional' AS claim_type, 'P' || claim_id AS person_id,
               lower(payer) AS payer, admit_date AS claim_start_date, discharge_date AS claim_end_date,
               admit_date AS admission_date, discharge_date, discharge_status AS discharge_disposition_code,
               '111' AS bill_type_code, 'ms-drg' AS drg_code_type, ltrim(billed_drg, '0') AS drg_code,
               CASE line WHEN 1 THEN '0120' ELSE '0250' END AS revenue_center_code,
               facility_id AS billing_npi, facility_id AS facility_npi,
               CASE line WHEN 1 THEN 4000.00 ELSE 1234.56 END AS paid_amount,
               {dx}, {px}, 'benchmark' AS data_source
        FROM claims, (SELECT unnest([1, 2]) AS line) ORDER BY claim_id, line"""
    paths = [out / "medical_claim.csv", out / "eligibility.csv"]
    con.execute(f"COPY ({lines}) TO '{paths[0]}' (HEADER)")
    con.execute(f"""COPY (SELECT 'P' || claim_id AS person_id, 'M' || claim_id AS member_id,
            CASE sex WHEN 'M' THEN 'male' WHEN 'F' THEN 'female' ELSE 'unknown' END AS gender,
            CAST(admit_date::DATE - to_years(age::INTEGER) AS DATE) AS birth_date,
            DATE '2020-01-01' AS enrollment_start_date, DATE '2026-12-31' AS enrollment_end_date,
            lower(payer) AS payer, 'benchmark' AS data_source FROM claims) TO '{paths[1]}' (HEADER)""")
    return paths


def write_cms(con: duckdb.DuckDBPyConnection, out: Path) -> list[Path]:
    def d(expr: str) -> str:
        return f"upper(strftime(CAST({expr} AS DATE), '%d-%b-%Y'))"

    dx = ", ".join(f"dx{p} AS ICD_DGNS_CD{p}, '0' AS ICD_DGNS_VRSN_CD{p}, poa{p} AS CLM_POA_IND_SW{p}" for p in P)
    px = ", ".join(f"px{p} AS ICD_PRCDR_CD{p}, CASE WHEN px{p} IS NOT NULL THEN {d('admit_date')} END AS PRCDR_DT{p}"
                   for p in P)
    lines = f"""
        SELECT 'INSERT' AS DML_IND, 'B' || claim_id AS BENE_ID, claim_id AS CLM_ID, 'F' AS FINAL_ACTION,
               '60' AS NCH_CLM_TYPE_CD, {d('admit_date')} AS CLM_FROM_DT, {d('discharge_date')} AS CLM_THRU_DT,
               facility_id AS PRVDR_NUM, '1' AS CLM_FAC_TYPE_CD, '1' AS CLM_SRVC_CLSFCTN_TYPE_CD,
               '5234.56' AS CLM_PMT_AMT, facility_id AS ORG_NPI_NUM, discharge_status AS PTNT_DSCHRG_STUS_CD,
               {d('admit_date')} AS CLM_ADMSN_DT, {d('discharge_date')} AS NCH_BENE_DSCHRG_DT,
               billed_drg AS CLM_DRG_CD, dx1 AS PRNCPAL_DGNS_CD, {dx}, {px}, line AS CLM_LINE_NUM,
               CASE line WHEN 1 THEN '0120' ELSE '0250' END AS REV_CNTR
        FROM claims, (SELECT unnest([1, 2]) AS line) ORDER BY claim_id, line"""
    paths = [out / "inpatient.txt", out / "beneficiary.txt"]
    con.execute(f"COPY ({lines}) TO '{paths[0]}' (HEADER, DELIMITER '|')")
    con.execute(f"""COPY (SELECT 'B' || claim_id AS BENE_ID,
            {d("CAST(admit_date::DATE - to_years(age::INTEGER) AS DATE)")} AS BENE_BIRTH_DT,
            CASE sex WHEN 'M' THEN '1' WHEN 'F' THEN '2' ELSE '0' END AS BENE_SEX_IDENT_CD
            FROM claims) TO '{paths[1]}' (HEADER, DELIMITER '|')""")
    return paths


def _rows(con: duckdb.DuckDBPyConnection):
    cols = ["claim_id", "facility_id", "patient_id", "admit_date", "discharge_date", "discharge_status", "age",
            "sex", "payer", "billed_drg"] + [f"dx{p}" for p in P] + [f"poa{p}" for p in P] + [f"px{p}" for p in P]
    cur = con.execute(f"SELECT {', '.join(cols)}, CAST(CAST(admit_date AS DATE) - to_years(age::INTEGER) AS DATE)::VARCHAR "
                      "FROM claims ORDER BY claim_id")
    while batch := cur.fetchmany(10_000):
        for row in batch:
            yield dict(zip(cols + ["birth"], row))


def write_x12(con: duckdb.DuckDBPyConnection, out: Path, per_transaction: int = 5000) -> list[Path]:
    path = out / "claims_837i.x12"
    segs: list[str] = []
    st = 0
    hl = 0
    with open(path, "w", encoding="ascii") as fh:
        fh.write("ISA*00*          *00*          *ZZ*BENCHSUBMIT    *ZZ*BENCHRECEIVE   *260115*1200*^*00501*"
                 "000000001*0*T*:~\nGS*HC*BENCHSUBMIT*BENCHRECEIVE*20260115*1200*1*X*005010X223A2~\n")

        def close_st():
            nonlocal segs
            if segs:
                segs.append(f"SE*{len(segs) + 1}*{st:04d}")
                fh.write("~\n".join(segs) + "~\n")
                segs = []

        for i, r in enumerate(_rows(con)):
            if i % per_transaction == 0:
                close_st()
                st += 1
                hl = 0
                segs = [f"ST*837*{st:04d}*005010X223A2", "BHT*0019*00*B{st}*20260115*1200*CH",
                        "NM1*41*2*BENCH SUBMITTER*****46*BENCHSUBMIT", "PER*IC*DESK*TE*5555550100",
                        "NM1*40*2*BENCH RECEIVER*****46*BENCHRECEIVE"]
            hl += 2
            dob = r["birth"].replace("-", "")
            dx = [(r[f"dx{p}"], r[f"poa{p}"]) for p in P if r[f"dx{p}"]]
            px = [r[f"px{p}"] for p in P if r[f"px{p}"]]
            segs += [f"HL*{hl - 1}**20*1", f"NM1*85*2*FACILITY {r['facility_id']}*****XX*{r['facility_id']}",
                     "N3*1 MAIN ST", "N4*SPRINGFIELD*IL*62701", "REF*EI*371234567",
                     f"HL*{hl}*{hl - 1}*22*0", "SBR*P*18*******MA", f"NM1*IL*1*DOE*J****MI*{r['patient_id']}",
                     f"DMG*D8*{dob}*{r['sex']}", f"NM1*PR*2*{r['payer']}*****PI*PAYER1",
                     f"CLM*{r['claim_id']}*1000***11:A:1**A*Y*Y",
                     f"DTP*434*RD8*{r['admit_date'].replace('-', '')}-{r['discharge_date'].replace('-', '')}",
                     f"DTP*435*D8*{r['admit_date'].replace('-', '')}", f"CL1*1*7*{r['discharge_status']}",
                     f"HI*ABK:{dx[0][0]}:::::::{dx[0][1] or ''}"]
            if r["billed_drg"]:
                segs.append(f"HI*DR:{r['billed_drg']}")
            for chunk in (dx[1:13], dx[13:25]):
                if chunk:
                    segs.append("HI*" + "*".join(f"ABF:{c}:::::::{poa or ''}" for c, poa in chunk))
            if px:
                segs.append(f"HI*BBR:{px[0]}:D8:{r['admit_date'].replace('-', '')}")
                for chunk in (px[1:13], px[13:25]):
                    if chunk:
                        segs.append("HI*" + "*".join(f"BBQ:{c}" for c in chunk))
            segs += ["LX*1", "SV2*0120**1000*DA*1"]
        close_st()
        fh.write(f"GE*{st}*1~\nIEA*1*000000001~\n")
    return [path]


def write_fhir(con: duckdb.DuckDBPyConnection, out: Path) -> list[Path]:
    si = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
    path = out / "eob.ndjson"
    facilities = set()
    with open(path, "w") as fh:
        for r in _rows(con):
            facilities.add(r["facility_id"])
            diagnosis = [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": r["dx1"]}]},
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype",
                                      "code": "principal"}]}]}]
            for p in P:
                if p > 1 and r[f"dx{p}"]:
                    diagnosis.append({"sequence": p, "diagnosisCodeableConcept": {"coding": [
                        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": r[f"dx{p}"]}]},
                        "type": [{"coding": [{"system": "http://hl7.org/fhir/us/carin-bb/CodeSystem/"
                                                        "C4BBClaimDiagnosisType", "code": "other"}]}]})
                if r[f"poa{p}"] and r[f"dx{p}"]:
                    diagnosis[-1]["onAdmission"] = {"coding": [{"code": r[f"poa{p}"]}]}
            procedure = [{"sequence": p, "type": [{"coding": [{
                "system": "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimProcedureType",
                "code": "principal" if p == 1 else "other"}]}], "procedureCodeableConcept": {"coding": [
                    {"system": "http://www.cms.gov/Medicare/Coding/ICD10", "code": r[f"px{p}"]}]}}
                for p in P if r[f"px{p}"]]
            eob = {"resourceType": "ExplanationOfBenefit", "id": r["claim_id"],
                   "identifier": [{"type": {"coding": [{"code": "uc"}]}, "value": r["claim_id"]}],
                   "status": "active", "type": {"coding": [{"code": "institutional"}]},
                   "subType": {"coding": [{"code": "inpatient"}]}, "use": "claim",
                   "patient": {"reference": f"Patient/p{r['claim_id']}"}, "created": "2026-06-01",
                   "insurer": {"display": r["payer"]}, "provider": {"reference": f"Organization/{r['facility_id']}"},
                   "outcome": "complete",
                   "supportingInfo": [
                       {"sequence": 1, "category": {"coding": [{"system": si, "code": "admissionperiod"}]},
                        "timingPeriod": {"start": r["admit_date"], "end": r["discharge_date"]}},
                       {"sequence": 2, "category": {"coding": [{"system": si, "code": "discharge-status"}]},
                        "code": {"coding": [{"code": r["discharge_status"]}]}}]
                   + ([{"sequence": 3, "category": {"coding": [{"system": si, "code": "drg"}]},
                        "code": {"coding": [{"code": r["billed_drg"]}]}}] if r["billed_drg"] else []),
                   "diagnosis": diagnosis, "insurance": [{"focal": True, "coverage": {"reference": "Coverage/c1"}}],
                   "payment": {"amount": {"value": 5234.56, "currency": "USD"}}}
            if procedure:
                eob["procedure"] = procedure
            fh.write(json.dumps(eob) + "\n")
            gender = {"M": "male", "F": "female"}.get(r["sex"], "unknown")
            fh.write(json.dumps({"resourceType": "Patient", "id": f"p{r['claim_id']}", "gender": gender,
                                 "birthDate": r["birth"]}) + "\n")
        for facility in sorted(facilities):
            fh.write(json.dumps({"resourceType": "Organization", "id": facility, "name": facility, "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-npi", "value": facility}]}) + "\n")
    return [path]


WRITERS = {"tuva": write_tuva, "cms": write_cms, "x12": write_x12, "fhir": write_fhir}


# ---------------------------------------------------------------------------------------------

def input_rows(paths: list[Path]) -> int:
    """Records the reader consumes: data rows of CSV/RIF files (header excluded), X12 segments
    (one per line as written here), NDJSON resources."""
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            lines = sum(1 for _ in fh)
        total += lines - (1 if path.suffix in (".csv", ".txt") else 0)
    return total


def time_reader(fmt: str, paths: list[Path], full: bool) -> tuple[float, int]:
    from audits.ingest.loading import load
    from audits.ingest.readers import InputFiles, stage_inputs

    files = InputFiles(claims=paths, formats={} if fmt == "canonical" else {"claims": fmt})
    con = duckdb.connect(":memory:")
    started = time.perf_counter()
    if full:
        result = load(con, files, "2026-11")
        n = result.claims_loaded
    else:
        stage_inputs(con, files)
        n = con.execute("SELECT count(DISTINCT claim_id) FROM stg_claims").fetchall()[0][0]
    seconds = time.perf_counter() - started
    con.close()
    return seconds, n


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--only", default="tuva,cms,x12,fhir")
    parser.add_argument("--stage-only", action="store_true", help="skip the full load timing")
    args = parser.parse_args(argv)
    from audits.demo.config import DemoConfig
    from audits.demo.generate import generate_demo

    out = args.keep or Path(tempfile.mkdtemp(prefix="bench_readers_"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        generate_demo(out, DemoConfig(n_claims=args.claims, audit_sample=0))
        print(f"generated {args.claims:,} claims in {time.perf_counter() - started:.1f}s", flush=True)
        con = duckdb.connect()
        con.execute(f"CREATE TABLE claims AS SELECT * FROM read_csv('{out / 'claims.csv'}', all_varchar=true)")
        files = {"canonical": [out / "claims.csv"]}
        for fmt in args.only.split(","):
            started = time.perf_counter()
            folder = out / fmt
            folder.mkdir(exist_ok=True)
            files[fmt] = WRITERS[fmt](con, folder)
            size = sum(p.stat().st_size for p in files[fmt]) / 1e6
            print(f"wrote {fmt} ({size:.0f} MB) in {time.perf_counter() - started:.1f}s", flush=True)
        con.close()
        # Import every reader's modules first: timings are of reading, not of importing libraries.
        import audits.ingest.loading  # noqa: F401
        from audits.ingest.readers import cms, fhir, tuva, x12  # noqa: F401
        import pyx12.x12file  # noqa: F401

        fhir._models()
        # One untimed load first: the first load of a process also sets up Great Expectations
        # (about 3 s), which would otherwise be charged to whichever reader is timed first.
        time_reader("canonical", files["canonical"], full=True)
        figures: dict = {"claims": args.claims, "readers": {}}
        for fmt, paths in files.items():
            stage_s, staged = time_reader(fmt, paths, full=False)
            rows, megabytes = input_rows(paths), sum(p.stat().st_size for p in paths) / 1e6
            row = {"input_rows": rows, "input_mb": round(megabytes, 1), "stage_seconds": round(stage_s, 2),
                   "stage_claims_per_s": round(staged / stage_s), "stage_rows_per_s": round(rows / stage_s),
                   "stage_mb_per_s": round(megabytes / stage_s, 1), "claims_staged": staged}
            if not args.stage_only:
                load_s, loaded = time_reader(fmt, paths, full=True)
                row.update(load_seconds=round(load_s, 2), load_claims_per_s=round(loaded / load_s),
                           claims_loaded=loaded)
            figures["readers"][fmt] = row
            print(fmt, row, flush=True)
        base = figures["readers"]["canonical"]
        # 'x canon': how many times slower than the canonical reader, per claim (seconds for the
        # same claims) and per input row (rows/s; a layout with more rows per claim reads more).
        print(f"\n{'reader':10} {'rows':>9} {'MB':>6} {'stage s':>8} {'claims/s':>9} {'rows/s':>9} {'MB/s':>6} "
              f"{'x canon':>8} {'x rows/s':>8} {'load s':>8} {'claims/s':>9} {'x canon':>8}")
        for fmt, row in figures["readers"].items():
            row["stage_x_canonical"] = round(row["stage_seconds"] / base["stage_seconds"], 2)
            row["stage_rows_per_s_x_canonical"] = round(base["stage_rows_per_s"] / row["stage_rows_per_s"], 2)
            line = (f"{fmt:10} {row['input_rows']:9,} {row['input_mb']:6.0f} {row['stage_seconds']:8.1f} "
                    f"{row['stage_claims_per_s']:9,} {row['stage_rows_per_s']:9,} {row['stage_mb_per_s']:6.1f} "
                    f"{row['stage_x_canonical']:8.2f} {row['stage_rows_per_s_x_canonical']:8.2f}")
            if "load_seconds" in row:
                row["load_x_canonical"] = round(row["load_seconds"] / base["load_seconds"], 2)
                line += f" {row['load_seconds']:8.1f} {row['load_claims_per_s']:9,} {row['load_x_canonical']:8.2f}"
            print(line)
        print(json.dumps(figures))
        return figures
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
