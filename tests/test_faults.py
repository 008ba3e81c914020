"""Faults (issue 8, part 3): a run killed mid-way, two runs at once, a period run twice.

- SIGKILL during the load (a 200,000-claim file, killed at several points) leaves the warehouse
  readable with the previous tables: the run publishes only at its last step (issue 13; kills
  during every other stage are in tests/test_run_atomicity.py).
- SIGKILL while the publish transaction commits leaves the previous tables or the whole new run.
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

from audits.demo.config import DemoConfig
from audits.demo.generate import generate_demo
from tests.helpers import good_claims, good_reviews, write_wide
from tests.test_bad_input import cli, fingerprint, run_args

REPO = Path(__file__).resolve().parents[1]
DB = "warehouse.duckdb"


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


KILL_POINTS = {
    # name: (what to wait for, then seconds more)
    "load_after_1s": (lambda p: p.seen("ingest: started"), 1.0),
    "load_after_3s": (lambda p: p.seen("ingest: started"), 3.0),
    "load_staged": (lambda p: p.seen("ingest: loaded"), 0.0),   # staged, the step not finished
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_during_load_leaves_previous_tables(tmp_path, baseline, small, big, processes, point):
    """The load stages into the run's own file: until the run publishes, the warehouse is untouched."""
    work = _copy(baseline, tmp_path / "work")
    run = processes(run_args(work, big.claims, big.reviews))
    condition, delay = KILL_POINTS[point]
    assert run.wait_for(condition, 120), f"never reached {point}:\n{run.output}"
    time.sleep(delay)
    assert run.alive() and not run.seen("ingest: done"), f"the load ended before the kill:\n{run.output}"
    run.kill()
    assert fingerprint(work / DB) == baseline.tables  # opens read-only: the file is readable
    assert_next_run_completes(work, small, baseline)


def test_kill_during_the_publish_commit_leaves_old_or_whole_new_run(tmp_path, baseline, medium, medium_reference,
                                                                    processes):
    """Killed while the publish transaction commits (its WAL exists about 20 ms): every table is as
    before, or every table is the new run's; never some of each. The next run completes."""
    work = _copy(baseline, tmp_path / "work")
    run = processes(run_args(work, medium.claims, medium.reviews), wal=work / f"{DB}.wal")
    assert run.wait_for(lambda p: p.seen("publish: started"), 240), run.output
    run.wal_seen_at = None
    assert run.wait_for(lambda p: p.wal_seen_at is not None or p.seen("publish: done"), 60), run.output
    run.kill()
    after = fingerprint(work / DB)
    print(f"\nkilled at the publish commit: warehouse {'as before' if after == baseline.tables else 'new'}")
    assert after in (baseline.tables, medium_reference.tables)
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
