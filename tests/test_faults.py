"""Faults (issue 8, part 3): a run killed mid-way, two runs at once, a period run twice.

- SIGKILL during the load (a 200,000-claim file, killed at several points: before the publish
  transaction, when it commits, while DuckDB checkpoints) leaves the warehouse readable with the
  previous tables, or, if the commit was reached, with the complete new load; never part of it.
- SIGKILL between stages leaves each step's tables either as before the run or as that step
  publishes them; the next run then completes and gives what an uninterrupted run gives.
- Two runs started at once into one working folder both finish (the second waits for DuckDB's
  write lock) or one fails cleanly; the warehouse equals that of one run.
- Re-running a period replaces it: every table equals the one-run result, no duplicates.

Runs are real `python -m pipelines.cli run` processes in their own process group, killed by id;
every process a test starts is killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from assets.compare import COMPARE_TABLES
from assets.flags import FLAG_TABLES
from assets.ingest import INGEST_TABLES
from assets.revenue import REVENUE_TABLES
from audits.demo import DemoConfig, generate_demo
from tests.helpers import good_claims, good_reviews, write_wide
from tests.test_bad_input import cli, fingerprint, run_args

REPO = Path(__file__).resolve().parents[1]
DB = "warehouse.duckdb"
LOAD_TABLES = (*INGEST_TABLES, "loads")
STEP_OUTPUTS = [tuple(COMPARE_TABLES), tuple(REVENUE_TABLES), tuple(FLAG_TABLES)]


class CliProcess:
    """`python -m pipelines.cli ARGS` in a new session (its own process group); stdout lines are
    collected with their time, and the warehouse's WAL file is watched (it exists only while a
    transaction commits and until the checkpoint that follows)."""

    def __init__(self, args: list, wal: Path | None = None, argv0: list | None = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("CODING_AUDIT_DEBUG", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*(argv0 or [sys.executable, "-m", "pipelines.cli"]), *map(str, args)],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.err: list[str] = []
        self.wal_seen_at: float | None = None
        self.ended_at: float | None = None  # when stdout closed, i.e. the process ended
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        if wal is not None:
            self._threads.append(threading.Thread(target=self._watch, args=(wal,), daemon=True))
        for thread in self._threads:
            thread.start()

    def _read(self, stream, is_out: bool) -> None:
        for line in stream:
            with self._changed:
                (self.lines if is_out else self.err).append(
                    (time.monotonic() - self.started, line.rstrip("\n")) if is_out else line)
                self._changed.notify_all()
        with self._changed:
            if is_out:
                self.ended_at = time.monotonic() - self.started
            self._changed.notify_all()

    def _watch(self, wal: Path) -> None:
        while self.proc.poll() is None and self.wal_seen_at is None:
            if wal.exists():
                with self._changed:
                    self.wal_seen_at = time.monotonic() - self.started
                    self._changed.notify_all()
            time.sleep(0.002)

    def seen(self, marker: str) -> bool:
        return any(marker in line for _, line in self.lines)

    def wait_for(self, condition, timeout: float) -> bool:
        """Until condition(self) holds or the process has ended; True if it holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return condition(self)
                self._changed.wait(0.05)
        return True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines) + "\n" + "".join(self.err)


@pytest.fixture
def processes():
    """Start CliProcess-es; any still running at the end of the test is killed (by its group id)."""
    started: list[CliProcess] = []

    def start(*args, **kwargs) -> CliProcess:
        started.append(CliProcess(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.kill()


# ---------------------------------------------------------------------------------------------
# data and reference warehouses


@dataclass
class Warehouse:
    work: Path
    tables: dict


@dataclass
class Inputs:
    claims: Path
    reviews: Path
    n_claims: int
    n_reviews: int


def _copy(warehouse: Warehouse, dest: Path) -> Path:
    return Path(shutil.copytree(warehouse.work, dest))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("small")
    return Inputs(write_wide(root / "claims.csv", good_claims()), write_wide(root / "reviews.csv", good_reviews()),
                  len(good_claims()), len(good_reviews()))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, small) -> Warehouse:
    """The previously published state every test starts from: the small good period."""
    work = tmp_path_factory.mktemp("baseline") / "work"
    code, _, err = cli(*run_args(work, small.claims, small.reviews))
    assert code == 0, err
    return Warehouse(work, fingerprint(work / DB))


def _demo(tmp_path_factory, name: str, n_claims: int, n_reviews: int) -> Inputs:
    paths = generate_demo(tmp_path_factory.mktemp(name), DemoConfig(n_claims=n_claims, audit_sample=n_reviews,
                                                                     seed=2026))
    return Inputs(paths["claims"], paths["reviews"], n_claims, n_reviews)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Inputs:
    """Large enough that the load takes seconds (6-14 s on the 2-core reference machine)."""
    return _demo(tmp_path_factory, "big", 200_000, 2_000)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Inputs:
    return _demo(tmp_path_factory, "medium", 20_000, 2_000)


@pytest.fixture(scope="module")
def medium_reference(tmp_path_factory, baseline, medium) -> Warehouse:
    """The warehouse after one uninterrupted run of the medium files on top of the baseline."""
    work = _copy(baseline, tmp_path_factory.mktemp("reference") / "work")
    code, _, err = cli(*run_args(work, medium.claims, medium.reviews))
    assert code == 0, err
    return Warehouse(work, fingerprint(work / DB))


def _count(work: Path, sql: str) -> int:
    con = duckdb.connect(str(work / DB), read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


def assert_next_run_completes(work: Path, inputs: Inputs, expected: Warehouse) -> None:
    code, _, err = cli(*run_args(work, inputs.claims, inputs.reviews))
    assert code == 0, err
    assert fingerprint(work / DB) == expected.tables


# ---------------------------------------------------------------------------------------------
# SIGKILL during the load


def _loaded_completely(work: Path, inputs: Inputs) -> bool:
    counts = [_count(work, sql) for sql in (
        "SELECT count(*) FROM claims", "SELECT count(DISTINCT claim_id) FROM claims", "SELECT count(*) FROM reviews",
        "SELECT count(DISTINCT claim_id) FROM claim_codes WHERE side = 'original'",
        "SELECT count(DISTINCT claim_id) FROM claim_codes WHERE side = 'audited'",
        "SELECT count(*) FROM loads", "SELECT max(claims_loaded) FROM loads")]
    n, m = inputs.n_claims, inputs.n_reviews
    return counts == [n, n, m, n, m, 1, n]


KILL_POINTS = {
    # name: (what to wait for, then seconds more). The publish transaction's WAL lives about 20 ms.
    "load_after_1s": (lambda p: p.seen("ingest: started"), 1.0),
    "load_after_3s": (lambda p: p.seen("ingest: started"), 3.0),
    "commit": (lambda p: p.wal_seen_at is not None or p.seen("ingest: loaded"), 0.0),
    "after_commit": (lambda p: p.seen("ingest: loaded"), 0.0),   # committed, the step not finished
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_during_load_leaves_previous_or_complete_tables(tmp_path, baseline, small, big, processes, point):
    work = _copy(baseline, tmp_path / "work")
    run = processes(run_args(work, big.claims, big.reviews), wal=work / f"{DB}.wal")
    condition, delay = KILL_POINTS[point]
    assert run.wait_for(condition, 120), f"never reached {point}:\n{run.output}"
    time.sleep(delay)
    assert run.alive() and not run.seen("ingest: done"), f"the load ended before the kill:\n{run.output}"
    committed = run.seen("ingest: loaded")
    run.kill()

    after = fingerprint(work / DB)  # opens read-only: the file is readable
    previous = after == baseline.tables
    print(f"\nkilled at {point}: WAL seen {run.wal_seen_at is not None}, warehouse "
          f"{'as before' if previous else 'with the complete new load'}")
    if run.wal_seen_at is None and not committed:
        # killed before the publish transaction committed: exactly the previous tables
        assert previous
    elif committed or not previous:
        # the commit was reached (and is durable): the whole new load, nothing else touched
        assert _loaded_completely(work, big), after
        assert {t: v for t, v in after.items() if t not in LOAD_TABLES} == {
            t: v for t, v in baseline.tables.items() if t not in LOAD_TABLES}
    assert_next_run_completes(work, small, baseline)


# ---------------------------------------------------------------------------------------------
# SIGKILL between stages


@pytest.mark.parametrize("step", ["coding_comparison", "revenue", "upcoding"])
def test_kill_between_stages_keeps_each_step_whole_and_next_run_completes(
        tmp_path, baseline, medium, medium_reference, processes, step):
    work = _copy(baseline, tmp_path / "work")
    run = processes(run_args(work, medium.claims, medium.reviews))
    assert run.wait_for(lambda p: p.seen(f"{step}: started"), 120), run.output
    run.kill()

    after = fingerprint(work / DB)
    old, new = baseline.tables, medium_reference.tables
    # the load had committed: its tables are the new ones
    assert {t: after[t] for t in LOAD_TABLES} == {t: new[t] for t in LOAD_TABLES}
    # each step publishes its tables in one transaction: all as before, or all as the step writes them
    seen = []
    for outputs in STEP_OUTPUTS:
        state = {t: after.get(t) for t in outputs}
        assert state in ({t: old.get(t) for t in outputs}, {t: new.get(t) for t in outputs}), outputs
        seen.append(f"{outputs[0]}.. {'new' if state == {t: new.get(t) for t in outputs} else 'as before'}")
    print(f"\nkilled when {step} started: " + ", ".join(seen))
    for table in set(after) - set(LOAD_TABLES):
        assert after[table] in (old.get(table), new.get(table)), table
    assert_next_run_completes(work, medium, medium_reference)


# ---------------------------------------------------------------------------------------------
# two runs at once, a run waiting for the lock, and re-runs


def test_two_runs_at_once_do_not_corrupt_the_warehouse(tmp_path, baseline, medium, medium_reference, processes):
    work = _copy(baseline, tmp_path / "work")
    runs = [processes(run_args(work, medium.claims, medium.reviews)) for _ in range(2)]
    codes = [run.finish(timeout=240) for run in runs]
    for i, run in enumerate(runs):
        ingest = [f"{t:.1f}s {line.split('] ', 1)[-1][:24]}" for t, line in run.lines if "ingest:" in line]
        print(f"\nrun {i + 1} of two at once: exit {run.proc.returncode} after {run.ended_at:.1f} s; {ingest}")
    assert 0 in codes, [run.output for run in runs]
    for code, run in zip(codes, runs):
        assert code == 0 or (code in (1, 2) and "lock" in run.output.lower()), run.output
        assert "Traceback" not in run.output
    assert _count(work, "SELECT count(*) FROM claims") == medium.n_claims
    assert fingerprint(work / DB) == medium_reference.tables


HOLD_LOCK = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
             "time.sleep(float(sys.argv[2]))")


def test_run_waits_for_a_briefly_held_lock(tmp_path, baseline, small, processes):
    work = _copy(baseline, tmp_path / "work")
    holder = processes([work / DB, 4], argv0=[sys.executable, "-c", HOLD_LOCK])
    assert holder.wait_for(lambda p: p.seen("locked"), 30), holder.output
    started = time.monotonic()
    code, _, err = cli(*run_args(work, small.claims, small.reviews))
    took = time.monotonic() - started
    print(f"\nrun blocked by a 4 s write lock finished in {took:.1f} s")
    assert code == 0, err
    assert took >= 2  # it did wait for the holder
    assert fingerprint(work / DB) == baseline.tables


@pytest.mark.slow
def test_run_blocked_by_a_held_lock_fails_cleanly_within_30s(tmp_path, baseline, small, processes):
    work = _copy(baseline, tmp_path / "work")
    holder = processes([work / DB, 300], argv0=[sys.executable, "-c", HOLD_LOCK])
    assert holder.wait_for(lambda p: p.seen("locked"), 30), holder.output
    run = processes(run_args(work, small.claims, small.reviews))
    ended = run.wait_for(lambda p: not p.alive(), 35)
    took = time.monotonic() - run.started
    run.kill()
    holder.kill()
    print(f"\nrun blocked by a held lock: ended={ended} after {took:.1f} s")
    assert ended, "still waiting for the lock after 35 s"
    run.finish(5)
    assert run.proc.returncode in (1, 2) and "lock" in run.output.lower() and "Traceback" not in run.output
    assert fingerprint(work / DB) == baseline.tables


COUNTED = ["claims", "reviews", "claim_codes", "code_diffs", "claim_regroup", "upcoding_flags", "revenue_impact"]


def test_rerunning_a_period_replaces_it_never_duplicates(tmp_path, medium, medium_reference):
    work = _copy(medium_reference, tmp_path / "work")
    code, _, err = cli(*run_args(work, medium.claims, medium.reviews))
    assert code == 0, err
    after = fingerprint(work / DB)
    assert {t: after[t][0] for t in COUNTED} == {t: medium_reference.tables[t][0] for t in COUNTED}
    assert after == medium_reference.tables
    assert _count(work, "SELECT count(*) FROM claims") == medium.n_claims
    assert _count(work, "SELECT count(*) - count(DISTINCT claim_id) FROM reviews") == 0
    assert _count(work, "SELECT count(*) FROM loads WHERE audit_period = '2026-11'") == 1
