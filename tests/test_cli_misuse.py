"""No user mistake reaches "internal error" (issue 13): every CLI command, each option misused once,
exits 2 with a message (argparse's own usage error or ours), never exit 1."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.helpers import good_claims, good_reviews, write_wide


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("misuse")
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "bad.toml").write_text("default_base_rate = [\n")
    (root / "not_claims.csv").write_text("hello,world\n1,2\n")
    return {"claims": write_wide(root / "claims.csv", good_claims()),
            "reviews": write_wide(root / "reviews.csv", good_reviews()),
            "file": root / "a_file.txt", "missing": root / "missing.csv", "bad_toml": root / "bad.toml",
            "not_claims": root / "not_claims.csv", "root": root}


def _run(argv: list) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: a usage error
            code = exc.code
    return code, err.getvalue()


# (command, option, misused value(s)); "{x}" names a fixture file
MISUSES = [
    ("run", "--claims", ["{missing}"]), ("run", "--claims", ["{not_claims}"]),
    ("run", "--reviews", ["{missing}"]), ("run", "--claim-diagnoses", ["{missing}"]),
    ("run", "--claim-procedures", ["{missing}"]), ("run", "--review-diagnoses", ["{missing}"]),
    ("run", "--review-procedures", ["{missing}"]), ("run", "--format", ["xls"]),
    ("run", "--universe", ["{missing}"]), ("run", "--peers", ["{missing}"]),
    ("run", "--workdir", ["{file}"]), ("run", "--period", ["2026-13"]), ("run", "--period", ["November"]),
    ("run", "--max-rejected-share", ["2"]), ("run", "--max-rejected-share", ["half"]),
    ("run", "--base-rate", ["-5"]), ("run", "--base-rate", ["abc"]), ("run", "--regroup-universe", ["yes"]),
    ("run", "--rates-config", ["{missing}"]), ("run", "--rates-config", ["{bad_toml}"]),
    ("run", "--weights-dir", ["{missing}"]), ("run", "--date-format", ["dd/mm/yyyy"]),
    ("sample", "--universe", ["{missing}"]), ("sample", "--size", ["0"]), ("sample", "--size", ["99"]),
    ("sample", "--size", ["ten"]), ("sample", "--seed", ["-1"]), ("sample", "--stratify", []),
    ("sample", "--out", ["{file}"]), ("sample", "--date-format", ["x"]),
    ("generate", "--out", ["{file}"]), ("generate", "--n-claims", ["0"]), ("generate", "--audit-sample", ["50"]),
    ("generate", "--seed", ["-3"]), ("generate", "--format", ["xls"]), ("generate", "--no-planted-patterns", ["x"]),
    ("demo", "--workdir", ["{file}"]), ("demo", "--n-claims", ["-1"]), ("demo", "--audit-sample", ["999999"]),
    ("demo", "--period", ["26-11"]), ("demo", "--base-rate", ["0"]), ("demo", "--max-rejected-share", ["-0.1"]),
    ("demo", "--rates-config", ["{missing}"]), ("demo", "--weights-dir", ["{file}"]),
    ("demo", "--date-format", ["mmddyy"]), ("demo", "--seed", ["abc"]),
]


def _argv(command: str, option: str, values: list, files: dict, tmp_path: Path) -> list:
    values = [v.format(**{k: str(p) for k, p in files.items()}) for v in values]
    base = {
        "run": {"--claims": [files["claims"]], "--reviews": [files["reviews"]], "--workdir": [tmp_path / "w"],
                "--period": ["2026-11"]},
        "sample": {"--universe": [files["claims"]], "--size": ["2"], "--seed": ["1"], "--out": [tmp_path / "s"]},
        "generate": {"--out": [tmp_path / "g"], "--n-claims": ["20"], "--audit-sample": ["5"]},
        "demo": {"--workdir": [tmp_path / "d"], "--n-claims": ["20"], "--audit-sample": ["5"]},
    }[command]
    base[option] = values
    return [command] + [x for key, vals in base.items() for x in (key, *vals)]


@pytest.mark.parametrize("command,option,values", MISUSES, ids=[f"{c} {o} {' '.join(v)}" for c, o, v in MISUSES])
def test_misused_option_is_exit_2_never_internal_error(tmp_path, files, command, option, values):
    code, err = _run(_argv(command, option, values, files, tmp_path))
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    assert err.strip(), "no message"


def test_stratify_without_a_stratum_column_says_what_to_do(tmp_path, files):
    code, err = _run(["sample", "--universe", files["claims"], "--size", "2", "--seed", "1", "--stratify",
                      "--out", tmp_path / "s"])
    assert code == 2
    assert "has no `stratum` column" in err and "leave out --stratify" in err and "claims.csv" in err
