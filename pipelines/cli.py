"""`coding-audit`: generate demo data, run the audit in-process, or both (`demo`).

Exit codes: 0 success, 2 bad input (the message names file, row and column), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
_RUN_START = [0.0]  # when the current run started: the clock of every printed line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coding-audit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a seeded demo universe of claims and an audit sample")
    gen.add_argument("--out", required=True, type=Path, help="folder for claims, reviews and truth files")
    _demo_size_options(gen)
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv")

    run = sub.add_parser("run", help="load, validate and audit the given files")
    run.add_argument("--claims", nargs="+", type=Path, required=True,
                     help="claims file(s): wide CSV/Parquet, or header file(s) of the long layout")
    run.add_argument("--reviews", nargs="+", type=Path, default=[], help="re-reviewed charts file(s)")
    for name in ("claim-diagnoses", "claim-procedures", "review-diagnoses", "review-procedures"):
        run.add_argument(f"--{name}", nargs="+", type=Path, default=[],
                         help=f"long layout: {name.replace('-', ' ')} file(s)")
    run.add_argument("--format", default="canonical",
                     choices=("canonical", "auto", "tuva", "cms", "x12", "fhir"),
                     help="layout of the claims and reviews files: canonical (wide or long CSV/Parquet), "
                          "tuva (Tuva input layer medical_claim), cms (CCW/BFD inpatient), x12 (837I), "
                          "fhir (ExplanationOfBenefit NDJSON/Bundle), or auto (detect)")
    run.add_argument("--universe", nargs="+", type=Path, default=[],
                     help="the claims population the audit sample was drawn from (enables extrapolation)")
    run.add_argument("--peers", nargs="+", type=Path, default=[],
                     help="peer DRG discharge counts by provider (e.g. CMS Medicare Inpatient Hospitals by "
                          "Provider and Service) for the facility target areas")
    _run_options(run)

    sample = sub.add_parser("sample", help="draw the next audit sample from a claims universe")
    sample.add_argument("--universe", nargs="+", type=Path, required=True, help="universe file(s)")
    sample.add_argument("--size", type=int, required=True, help="claims to draw")
    sample.add_argument("--seed", type=int, required=True, help="random seed (recorded; same seed, same sample)")
    sample.add_argument("--stratify", action="store_true",
                        help="stratified by the universe's `stratum` column, proportional allocation")
    sample.add_argument("--out", type=Path, required=True, help="folder for worklist.csv and sample.json")
    sample.add_argument("--date-format", choices=("mdy", "dmy", "ymd"),
                        help="how to read slash dates (as for `run`)")

    demo = sub.add_parser("demo", help="generate demo data and run the audit on it")
    demo.add_argument("--workdir", type=Path, default=Path("demo-run"))
    _run_options(demo, workdir_required=False)
    _demo_size_options(demo, default_claims=5000, default_sample=500)
    return parser


def _demo_size_options(p: argparse.ArgumentParser, default_claims: int = 5000, default_sample: int = 500):
    p.add_argument("--n-claims", type=int, default=default_claims, help="claims in the universe")
    p.add_argument("--audit-sample", type=int, default=default_sample, help="claims re-reviewed")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--no-planted-patterns", action="store_true",
                   help="no deliberate over-coder or septicemia outlier")


def _run_options(p: argparse.ArgumentParser, workdir_required: bool = True) -> None:
    if workdir_required:
        p.add_argument("--workdir", type=Path, required=True, help="folder for warehouse.duckdb and summary.json")
    p.add_argument("--period", help="audit period YYYY-MM, from 2015-10 to next month (default: this month); "
                                    "re-running a period replaces it")
    p.add_argument("--max-rejected-share", type=float, default=0.5,
                   help="stop without loading when more than this share of rows fails validation")
    p.add_argument("--base-rate", type=float, help="what-if: one base rate (USD) for every facility")
    p.add_argument("--regroup-universe", action="store_true",
                   help="regroup every claim, audited or not, and list billed-DRG mismatches with the dollar difference")
    p.add_argument("--rates-config", type=Path, help="TOML file of facility base rates and payer multipliers")
    p.add_argument("--weights-dir", type=Path,
                   help="folder of CMS Table 5 files: adds fiscal years not shipped (FY2027 on) and "
                        "replaces a shipped year (FY2016-FY2026) for this run")
    p.add_argument("--date-format", choices=("mdy", "dmy", "ymd"),
                   help="how to read slash dates: mdy (01/31/2026, US), dmy (31/01/2026) or ymd (2026/01/31); "
                        "default: as the file proves, refused when every slash date is ambiguous")


def _say(text: str) -> None:
    """Print a line; under a live progress bar, above it (tqdm.write), so the bar is not broken."""
    if _StageBars.active:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)
    else:
        print(text, flush=True)


class _StageBars:
    """Progress of long stages (audits.progress): on a terminal a bar per stage with counts, rate
    and ETA (tqdm, already installed with Dagster and Great Expectations); otherwise (a log file,
    a CI job) one line per stage when it ends, so logs stay readable."""

    active = 0

    def __init__(self, start: float, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.start = start
        self.bars: dict = {}
        self.began: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, unit: str) -> None:
        self.began.setdefault(stage, time.monotonic())
        if self.tty:
            from tqdm import tqdm

            bar = self.bars.get(stage)
            if bar is None:
                bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=f" {unit}", unit_scale=unit != "steps",
                                              file=self.stream, dynamic_ncols=True, leave=True)
                _StageBars.active += 1
            bar.update(done - bar.n)
        if done >= total:
            self._finish(stage, done, unit)

    def _finish(self, stage: str, done: int, unit: str) -> None:
        bar = self.bars.pop(stage, None)
        if bar is not None:
            bar.close()
            _StageBars.active -= 1
            return
        seconds = time.monotonic() - self.began.pop(stage)
        rate = f", {done / seconds:,.0f} {unit}/s" if seconds > 0 and done and unit != "steps" else ""
        _say(f"[{time.monotonic() - self.start:6.1f}s] {stage}: {done:,} {unit} in {seconds:.1f}s{rate}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        _StageBars.active -= len(self.bars)
        self.bars.clear()


class _Progress(logging.Handler):
    """One short line per step and per message an asset logs, instead of Dagster's debug stream."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.start = _RUN_START[0] or time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        text = None
        if event is not None:
            kind = event.event_type_value
            if kind == "STEP_START":
                text = f"{step}: started"
            elif kind == "STEP_SUCCESS":
                text = f"{step}: done"
            elif kind == "STEP_FAILURE":
                text = f"{step}: FAILED"
            elif kind == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                text = f"check {data.asset_key.to_user_string()}.{data.check_name}: " + (
                    "passed" if data.passed else "FAILED")
        elif record.levelno >= logging.INFO and step and "Not executing" not in record.getMessage():
            text = f"{step}: {meta.get('orig_message', record.getMessage())}"
        if text:
            _say(f"[{time.monotonic() - self.start:6.1f}s] {text}")


def run_audit(files, workdir: Path, period: str | None, max_rejected_share: float = 0.5,
              base_rate: float | None = None, rates_config: Path | None = None,
              weights_dir: Path | None = None, peers: list | None = None,
              regroup_universe: bool = False, date_format: str | None = None) -> dict:
    """Run the audit job in-process for one period; returns summary.json's content."""
    import dagster as dg

    from audits.errors import InputError
    from audits.ingest.loading import current_period
    from audits.periods import check_audit_period
    from audits.progress import listen
    from pipelines.definitions import build_definitions

    period = check_audit_period(period or current_period())
    _RUN_START[0] = time.monotonic()
    defs = build_definitions(workdir=workdir, max_rejected_share=max_rejected_share, base_rate=base_rate,
                             rates_config=rates_config, weights_folder=weights_dir, peers=peers,
                             regroup_universe=regroup_universe)
    job = defs.resolve_job_def("audit_job")
    formats = files.pop("formats", None) or {}
    config = {"ops": {"ingest": {"config": {**{k.replace("-", "_"): [str(p) for p in v]
                                               for k, v in files.items()},
                                            **({"formats": formats} if formats else {}),
                                            **({"date_format": date_format} if date_format else {})}}}}

    @dg.logger
    def progress_logger(_init_context):
        log = logging.getLogger("coding_audit_progress")
        log.handlers = [_Progress()]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        return log

    config["loggers"] = {"progress": {}}
    job = job.with_logger_defs({"progress": progress_logger}) if hasattr(job, "with_logger_defs") else job
    bars = _StageBars(_RUN_START[0])
    stop_listening = listen(bars)
    try:
        result = job.execute_in_process(run_config=config, partition_key=period,
                                        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    finally:
        stop_listening()
        bars.close()
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                cause = error.cause or error
                while cause.cause is not None and cause.cls_name not in (
                        "InputError", "TooManyRejectedError", "MissingWeightsError"):
                    cause = cause.cause
                if cause.cls_name in ("InputError", "TooManyRejectedError", "MissingWeightsError"):
                    raise InputError(cause.message.split(": ", 1)[-1].strip())
                if cause.cls_name == "DagsterAssetCheckFailedError":
                    raise RuntimeError("blocking checks failed (" + ", ".join(
                        line.strip() for line in cause.message.splitlines()[1:] if line.strip())
                        + "): nothing of this run was published")
                if cause.cls_name == "WarehouseBusyError":
                    raise RuntimeError("warehouse busy: " + cause.message.split(": ", 1)[-1].strip())
                raise RuntimeError(f"step {event.step_key} failed: {cause.cls_name}: {cause.message.strip()}")
        failed_checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                         and not e.event_specific_data.passed]
        if failed_checks:
            raise RuntimeError("blocking checks failed: " + ", ".join(
                f"{e.event_specific_data.asset_key.to_user_string()}.{e.event_specific_data.check_name}"
                for e in failed_checks))
        raise RuntimeError("the audit run failed")
    return json.loads((workdir / "summary.json").read_text(encoding="utf-8"))


def _generate(args, out: Path, fmt: str = "csv") -> dict:
    from audits.demo.config import DemoConfig
    from audits.demo.generate import generate_demo

    config = DemoConfig(n_claims=args.n_claims, audit_sample=args.audit_sample, seed=args.seed,
                        plant_patterns=not args.no_planted_patterns)
    started = time.monotonic()
    paths = generate_demo(out, config, fmt=fmt)
    print(f"generated {args.n_claims:,} claims and {args.audit_sample:,} reviews in "
          f"{time.monotonic() - started:.1f}s: " + ", ".join(str(p) for p in paths.values()))
    return paths


def _sample(args) -> None:
    import duckdb

    from audits.errors import InputError
    from audits.revenue.sampling import draw_from_table, worklist
    from audits.ingest.universe import stage_universe
    from reports.exports import write_csv

    con = duckdb.connect(":memory:")
    rejected = stage_universe(con, args.universe, args.date_format)
    if len(rejected):
        first = rejected.iloc[0]
        raise InputError(f"{len(rejected)} universe rows are invalid ({first['reason']}); fix them first: a "
                         "sampling frame must list each claim once", file=first["source_file"], row=int(first["row"]),
                         column=first["column"])
    universe = "SELECT * EXCLUDE (source_file, source_row) FROM ok_universe"
    total, missing = con.execute(f"SELECT count(*), count(*) FILTER (WHERE stratum IS NULL) FROM ({universe})"
                                 ).fetchall()[0]
    if args.stratify and missing:
        what = ("has no `stratum` column" if missing == total
                else f"has {missing:,} claims without a stratum")
        raise InputError(f"--stratify draws within the universe's `stratum` column, and the universe {what}. "
                         "Add a `stratum` value to every claim (e.g. the DRG family or the facility), or leave "
                         "out --stratify for a simple random sample", file=args.universe[0], column="stratum")
    try:
        sample, description = draw_from_table(con, universe, args.size, seed=args.seed,
                                              stratum="stratum" if args.stratify else None)
    except ValueError as exc:  # the size against the universe: the user's numbers
        raise InputError(str(exc), file=args.universe[0]) from None
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(worklist(sample), args.out / "worklist.csv")
    description["universe_files"] = [str(p) for p in args.universe]
    (args.out / "sample.json").write_text(json.dumps(description, indent=2, default=str) + "\n")
    print(f"drew {len(sample):,} of {description['universe_size']:,} claims ({description['method']}, "
          f"seed {args.seed}): {args.out / 'worklist.csv'}")


def _print_summary(summary: dict, workdir: Path) -> None:
    print("\nSummary (" + str(workdir / "summary.json") + ")")
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) or value is None:
            print(f"  {key:28} {value}")
        elif key == "billed_drg_validation" and value:
            print(f"  {key:28} {value['mismatches']} mismatches, ${value['amount_at_stake']:,.2f} at stake")
        elif key == "fiscal_years" and value:
            print(f"  {key:28} " + "; ".join(
                f"FY{fy} {v['audited_claims']:,} audited" + (f" ({', '.join(v['msdrg_versions'])})"
                                                              if v["msdrg_versions"] else "")
                + (f", {v['not_grouped_claims']:,} not regrouped" if v["not_grouped_claims"] else "")
                + ("" if v["weights"] == "shipped" else f", weights {v['weights']}")
                for fy, v in value.items()))
        elif key == "upcoding_flags":
            print(f"  {key:28} " + ", ".join(f"{k} {v}" for k, v in value.items()))
        elif key == "formats" and value:
            print(f"  {key:28} " + ", ".join(f"{Path(f['file']).name} {f['format']}"
                                             + (" (detected)" if f.get("detected") else "") for f in value))
        elif key == "skipped_records":
            print(f"  {key:28} " + (", ".join(f"{Path(r['file']).name} {r['records']:,} {r['reason']}"
                                              for r in value) or "none"))
        elif key == "extrapolation":
            print(f"  {key:28} point {value['point']:,}, 90% CI {value['lower_90']:,} to {value['upper_90']:,}")
    print(f"Warehouse: {workdir / 'warehouse.duckdb'}")
    print(f"Reports:   {workdir / 'reports' / 'index.html'}")


def _check_options(args) -> None:
    """A user's mistake in an option is exit 2 with what to do, before anything runs."""
    from audits.errors import InputError

    def folder_for_output(path: Path, option: str) -> None:
        if path.exists() and not path.is_dir():
            raise InputError(f"{option} must be a folder; {path} is a file", file=path)

    if getattr(args, "n_claims", None) is not None and args.n_claims < 1:
        raise InputError(f"--n-claims must be at least 1, not {args.n_claims}")
    if getattr(args, "audit_sample", None) is not None and not 0 <= args.audit_sample <= args.n_claims:
        raise InputError(f"--audit-sample must be between 0 and --n-claims ({args.n_claims}), not {args.audit_sample}")
    if args.command in ("generate", "sample"):
        folder_for_output(args.out, "--out")
    if args.command == "sample":
        if args.size < 1:
            raise InputError(f"--size must be at least 1, not {args.size}")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise InputError(f"--seed must be a whole number 0 or above, not {args.seed}")
    if args.command not in ("run", "demo"):
        return
    folder_for_output(args.workdir, "--workdir")
    if args.period is not None:
        from audits.periods import check_audit_period
        check_audit_period(args.period)
    if not 0 <= args.max_rejected_share <= 1:
        raise InputError(f"--max-rejected-share is a share between 0 and 1 (e.g. 0.5), not {args.max_rejected_share}")
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        raise InputError("--weights-dir must be a folder of CMS Table 5 files; it does not exist or is a file",
                         file=args.weights_dir)
    from audits.revenue.pricing import load_rate_config

    load_rate_config(args.rates_config, base_rate_override=args.base_rate)  # InputError naming the problem
    if args.command == "run":
        for option in ("claims", "reviews", "claim_diagnoses", "claim_procedures", "review_diagnoses",
                       "review_procedures", "universe", "peers"):
            for path in getattr(args, option) or []:
                if not path.exists():
                    raise InputError(f"--{option.replace('_', '-')}: file not found", file=path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from audits.errors import InputError

    try:
        _check_options(args)
        if args.command == "generate":
            _generate(args, args.out, args.format)
            return EXIT_OK
        if args.command == "sample":
            _sample(args)
            return EXIT_OK
        if args.command == "demo":
            paths = _generate(args, args.workdir / "input")
            # The demo's claims file is the whole universe the audit sample was drawn from.
            files = {"claims": [paths["claims"]], "reviews": [paths["reviews"]], "universe": [paths["claims"]]}
            summary = run_audit(files, args.workdir, args.period, args.max_rejected_share, args.base_rate,
                                args.rates_config, args.weights_dir, None, args.regroup_universe, args.date_format)
        else:
            files = {"claims": args.claims, "reviews": args.reviews,
                     "claim-diagnoses": args.claim_diagnoses, "claim-procedures": args.claim_procedures,
                     "review-diagnoses": args.review_diagnoses, "review-procedures": args.review_procedures,
                     "universe": args.universe,
                     "formats": {} if args.format == "canonical" else {"claims": args.format,
                                                                       "reviews": args.format}}
            summary = run_audit(files, args.workdir, args.period, args.max_rejected_share, args.base_rate,
                                args.rates_config, args.weights_dir, args.peers, args.regroup_universe,
                                args.date_format)
        _print_summary(summary, args.workdir)
        return EXIT_OK
    except InputError as exc:
        print(f"coding-audit: bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: say it, exit 1
        print(f"coding-audit: internal error: {exc}", file=sys.stderr)
        if os.environ.get("CODING_AUDIT_DEBUG"):
            raise
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
