import os

import duckdb
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


# Issue 8 asks that the bad-input and fault suites together run in CI in under 5 minutes: the
# run's summary states their wall time (setup + call + teardown of each of their tests).
HARDENING_SUITES = ("tests/test_bad_input.py", "tests/test_faults.py")
_suite_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::", 1)[0]
    if module in HARDENING_SUITES:
        _suite_seconds[module] = _suite_seconds.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if _suite_seconds:
        parts = ", ".join(f"{m.split('/')[-1]} {s:.0f} s" for m, s in sorted(_suite_seconds.items()))
        terminalreporter.write_line(f"bad-input and fault suites: {sum(_suite_seconds.values()):.0f} s "
                                    f"({parts}; bound 300 s)")
