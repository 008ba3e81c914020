"""MS-DRG grouping behind a small interface, so another grouper can be plugged in.

`MsdrgAdapter` drives the PyPI package `msdrg` (a reimplementation of CMS's Java grouper, MIT).
Design, from measurements on the 2-core machine (benchmarks/regroup.py, 200,000 claim sides,
quiet machine; msdrg's own `group()` in a plain loop: ~21,000 claims/s):
- each distinct code set is grouped once (both sides of most audited claims agree, and short claims
  repeat; 2.3 claim sides per distinct set in the benchmark);
- the request JSON is built column-wise with pyarrow compute, and the native `msdrg_group_json` is
  called directly with it (no per-claim dict, validation or json.dumps); the answer is read with a
  few bytes.find / regular expressions (any answer they cannot read goes through json.loads);
- both cores: msdrg's `group()` from a ThreadPoolExecutor(2) does not scale (0.8-1.3x: its JSON
  encode/decode and validation hold the GIL). With the lean loop, 2 threads give 2.7-2.8x the plain
  loop and 2 worker processes 3.3x, because the answer-reading then runs in parallel too (with
  threads it runs after the native calls: reading in the grouping threads starves them of the GIL).
  So `mode='auto'` uses 2 processes for batches of at least 20,000 distinct code sets (pool
  start-up is not worth it below) and 2 threads otherwise; a pool that cannot start falls back to
  threads. One worker: ~2.0x the plain loop (dedupe and the lean loop alone).
  The worker processes are forked from a fork server (one clean, single-threaded process started on
  first use, ~0.5 s), never from the caller: a Dagster step has DuckDB and Arrow threads running,
  and a child forked from a threaded process can hang on a lock one of them held. As with any
  spawn or fork-server start, the workers import the caller's main module: a script that groups
  with processes needs the `if __name__ == "__main__":` guard.

POA policy (documented decision). The grouper's HAC logic refuses a non-exempt claim whose HAC-list
secondary has no POA (999 HAC_MISSING_ONE_POA, where CMS's Java grouper groups):
- the hospital is POA-exempt (`hospital_poa_exempt`): grouped as EXEMPT (no HAC logic);
  `poa_policy = 'hospital_exempt'`;
- the claim side carries no POA at all (no POA columns, or every value blank): grouped as EXEMPT,
  `poa_policy = 'no_poa_as_exempt'`: the DRG then follows from the codes alone;
- some secondaries have a blank POA (or '1', the retired "exempt from reporting" mark): those are
  sent as 'U' (documentation insufficient), which is how Medicare pays a HAC whose POA is not
  documented (no CC/MCC credit); `poa_policy = 'blank_poa_as_U'`, the codes in `poa_filled_codes`.
  POA only changes grouping for HAC-list codes, so the fill matters only where `hac_codes` (the
  secondaries whose HAC criteria were met) names the same code.
A blank principal-diagnosis POA is not sent (HAC logic reads secondaries only).
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

INPUT_COLUMNS = ["key", "version", "age", "sex", "discharge_status", "dx", "poa", "px", "hospital_poa_exempt"]
RESULT_COLUMNS = [
    "drg", "mdc", "return_code", "drg_description", "initial_drg",
    "mcc_codes", "cc_codes", "severity_codes", "drg_px_codes", "hac_codes",
]
OUTPUT_COLUMNS = ["key", *RESULT_COLUMNS, "hospital_status", "poa_policy", "poa_filled_codes"]
LIST_COLUMNS = ["mcc_codes", "cc_codes", "severity_codes", "drg_px_codes", "hac_codes", "poa_filled_codes"]
SEX_CODES = {"M": 0, "F": 1, "U": 2}
REPORTED_POA = ("Y", "N", "U", "W")
FINAL_IMPACT = ("FINAL", "BOTH")
# return_code of a claim side whose MS-DRG version the grouper does not carry.
UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
_LIST = pa.list_(pa.string())
_RESULT_SCHEMA = pa.schema([(c, _LIST if c in LIST_COLUMNS else pa.string()) for c in RESULT_COLUMNS])


@runtime_checkable
class Grouper(Protocol):
    """What the pipeline needs from an MS-DRG grouper.

    `group_many` takes one row per claim side (INPUT_COLUMNS: key, version e.g. 430, age, sex
    M/F/U, discharge_status '01', dx list with the principal first, poa list aligned with dx, px
    list, hospital_poa_exempt) and returns one row per input row in the same order
    (OUTPUT_COLUMNS): the final MS-DRG as 3-digit text (None when the grouper could not run),
    `return_code` 'OK' or the reason, and the secondaries the grouper used as MCC/CC.
    """

    name: str
    version_string: str

    def group_many(self, claims: pd.DataFrame) -> pd.DataFrame: ...


# ---------------------------------------------------------------------------------------------
# Reference (one claim at a time) forms: the fallback, and what the column-wise forms are tested
# against.
# ---------------------------------------------------------------------------------------------

def _blank(value: object) -> bool:
    return value is None or value is pd.NA or value != value or str(value).strip() == ""


def _as_list(value: object) -> list:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return []
    return list(value)


def request_json(version: int, age: int, sex: int, status: int, dx: object, poa: object, px: object,
                 exempt: bool) -> tuple[str | None, str | None, str | None, list[str]]:
    """One claim side's request JSON with the POA policy applied (the reference form).

    Returns (request or None without a principal diagnosis, hospital_status, poa_policy,
    codes whose blank POA was sent as 'U').
    """
    dx_list, poa_list = _as_list(dx), _as_list(poa)
    poa_list = poa_list + [None] * (len(dx_list) - len(poa_list))
    pairs = [(str(d).strip(), None if _blank(p) else str(p).strip().upper())
             for d, p in zip(dx_list, poa_list) if not _blank(d)]
    if not pairs:
        return None, None, None, []
    reported = [p in REPORTED_POA for _, p in pairs]
    filled: list[str] = []
    if exempt:
        hospital, policy = "EXEMPT", "hospital_exempt"
    elif not any(reported):
        hospital, policy = "EXEMPT", "no_poa_as_exempt"
    else:
        hospital = "NOT_EXEMPT"
        filled = [d for (d, _), ok in zip(pairs[1:], reported[1:]) if not ok]
        policy = "blank_poa_as_U" if filled else "given"

    def dx_json(i: int, code: str, poa_value: str | None, ok: bool) -> dict:
        sent = poa_value if ok else ("U" if i and hospital == "NOT_EXEMPT" else None)
        return {"code": code, "poa": sent} if sent else {"code": code}

    entries = [dx_json(i, d, p, ok) for i, ((d, p), ok) in enumerate(zip(pairs, reported))]
    procs = [{"code": str(c).strip()} for c in _as_list(px) if not _blank(c)]
    claim = {"version": version, "age": age, "sex": sex, "discharge_status": status,
             "hospital_status": hospital, "pdx": entries[0], "sdx": entries[1:], "procedures": procs}
    return json.dumps(claim, separators=(",", ":")), hospital, policy, filled


def extract_result(result: dict) -> tuple:
    """The parts of msdrg's answer an audit keeps, in RESULT_COLUMNS order (the reference form)."""
    mcc, cc, severity, hac = [], [], [], []
    for s in result.get("sdx_output") or ():
        code, level = s["code"], s.get("severity", "NONE")
        hac_met = any(h.get("hac_status") == "HAC_CRITERIA_MET" for h in s.get("hacs") or ())
        if hac_met:
            hac.append(code)
        if level in ("CC", "MCC") and "EXCLUDED" not in (s.get("flags") or ()):
            severity.append(f"{code}:{level}")
            # A HAC takes its CC/MCC out of the final DRG even where drg_impact still reads BOTH.
            if s.get("drg_impact") in FINAL_IMPACT and not hac_met:
                (mcc if level == "MCC" else cc).append(code)
    px = [p["code"] for p in result.get("proc_output") or () if p.get("drg_impact") in FINAL_IMPACT]
    drg, mdc, initial = result.get("final_drg"), result.get("final_mdc"), result.get("initial_drg")
    return (
        None if drg is None else f"{drg:03d}",
        None if not mdc else f"{mdc:02d}",  # msdrg reports MDC 0 with DRG 999
        result.get("return_code") or "UNKNOWN",
        result.get("final_drg_description") or None,
        None if initial is None else f"{initial:03d}",
        mcc, cc, severity, px, hac,
    )


# ---------------------------------------------------------------------------------------------
# Column-wise forms
# ---------------------------------------------------------------------------------------------

def _list_array(values: pd.Series | None, n: int) -> pa.ListArray:
    if values is None:
        return pa.nulls(n, _LIST)
    try:
        arr = pa.array(values, type=_LIST, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array([[None if _blank(v) else str(v) for v in _as_list(x)] for x in values], type=_LIST)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr


def _flatten(arr: pa.ListArray, n: int) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values of a list column with, for each value, its row and its position in the row's list."""
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(arr)
    starts = np.cumsum(lengths) - lengths
    parent = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(values)) - starts[parent]
    return values, parent, pos, lengths, starts


def _lists(values: pa.Array, parent: np.ndarray, n: int) -> pa.ListArray:
    """Regroup values (in row order) into one list per row; rows without values get []."""
    counts = np.bincount(parent, minlength=n) if len(parent) else np.zeros(n, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values.cast(pa.string()))


def _json_string(codes: pa.Array) -> pa.Array:
    """A code as a JSON string literal (codes are normally alphanumeric: nothing to escape)."""
    if not pc.all(pc.match_substring_regex(codes, r"^[0-9A-Za-z]*$")).as_py():
        codes = pc.replace_substring(codes, "\\", "\\\\")
        codes = pc.replace_substring(codes, '"', '\\"')
        codes = pc.replace_substring_regex(codes, r"[\x00-\x1f]", "?")
    return pc.binary_join_element_wise('"', codes, '"', "")


def _clean(values: pa.Array) -> pa.Array:
    values = pc.utf8_trim_whitespace(values.cast(pa.string()))
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def build_requests(claims: pd.DataFrame, ok: np.ndarray, version: np.ndarray, age: np.ndarray,
                   sex: np.ndarray, status: np.ndarray, exempt: np.ndarray) -> dict[str, pa.Array]:
    """Request JSON per row (null where `ok` is false or there is no principal), column-wise."""
    n = len(claims)
    dx, dx_parent, dx_pos, _, _ = _flatten(_list_array(claims["dx"], n), n)
    poa_arr = _list_array(claims["poa"] if "poa" in claims else None, n)
    poa_values, _, _, poa_len, poa_starts = _flatten(poa_arr, n)
    has_poa = dx_pos < poa_len[dx_parent]
    poa_idx = np.where(has_poa, poa_starts[dx_parent] + dx_pos, 0)
    poa = pc.take(pc.utf8_upper(_clean(poa_values)) if len(poa_values) else pa.array([], pa.string()),
                  pa.array(poa_idx, mask=~has_poa)) if len(dx) else pa.array([], pa.string())

    code = _clean(dx)
    keep = pc.is_valid(code).to_numpy(zero_copy_only=False)
    code, poa, parent = code.filter(keep), poa.filter(keep), dx_parent[keep]
    counts = np.bincount(parent, minlength=n)
    first = np.cumsum(counts) - counts
    principal = (np.arange(len(parent)) - first[parent]) == 0
    reported = pc.fill_null(pc.is_in(poa, pa.array(REPORTED_POA)), False).to_numpy(zero_copy_only=False)
    any_reported = np.bincount(parent, weights=reported, minlength=n) > 0
    row_exempt = exempt | ~any_reported
    filled = ~reported & ~principal & ~row_exempt[parent]
    sent_poa = pc.if_else(pa.array(reported), poa,
                          pc.if_else(pa.array(filled), pa.scalar("U"), pa.scalar(None, pa.string())))
    code_json = _json_string(code)
    entry = pc.if_else(
        pc.is_valid(sent_poa),
        pc.binary_join_element_wise('{"code":', code_json, ',"poa":"', sent_poa, '"}', ""),
        pc.binary_join_element_wise('{"code":', code_json, "}", ""),
    )
    pdx_index = np.full(n, -1)
    pdx_index[parent[principal]] = np.flatnonzero(principal)
    pdx = pc.take(entry, pa.array(np.maximum(pdx_index, 0), mask=pdx_index < 0))
    sdx = pc.binary_join(_lists(entry.filter(pa.array(~principal)), parent[~principal], n), ",")

    px, px_parent, _, _, _ = _flatten(_list_array(claims["px"] if "px" in claims else None, n), n)
    px = _clean(px)
    px_keep = pc.is_valid(px).to_numpy(zero_copy_only=False)
    px_entry = pc.binary_join_element_wise('{"code":', _json_string(px.filter(px_keep)), "}", "")
    procedures = pc.binary_join(_lists(px_entry, px_parent[px_keep], n), ",")

    hospital = pc.if_else(pa.array(row_exempt), "EXEMPT", "NOT_EXEMPT")
    as_text = lambda a: pa.array(a.astype(np.int64)).cast(pa.string())  # noqa: E731
    request = pc.binary_join_element_wise(
        '{"version":', as_text(version), ',"age":', as_text(age), ',"sex":', as_text(sex),
        ',"discharge_status":', as_text(status), ',"hospital_status":"', hospital, '","pdx":', pdx,
        ',"sdx":[', sdx, '],"procedures":[', procedures, "]}", "")
    sendable = ok & (counts > 0)
    request = pc.if_else(pa.array(sendable), request, pa.scalar(None, pa.string()))
    n_filled = np.bincount(parent[filled], minlength=n)
    policy = pc.if_else(pa.array(exempt), "hospital_exempt",
                        pc.if_else(pa.array(~any_reported), "no_poa_as_exempt",
                                   pc.if_else(pa.array(n_filled > 0), "blank_poa_as_U", "given")))
    return {
        "request": request,
        "hospital_status": pc.if_else(pa.array(sendable), hospital, pa.scalar(None, pa.string())),
        "poa_policy": pc.if_else(pa.array(sendable), policy, pa.scalar(None, pa.string())),
        "poa_filled_codes": _lists(code.filter(pa.array(filled)), parent[filled], n),
    }


_SEP = "\x1f"  # joins a result's codes; never in a code (control characters are not sent)
_SDX_ITEM = re.compile(rb'"code":"([^"\\]*)","mdc":[^,]*,"severity":"([A-Z_]*)","drg_impact":"([A-Z_]*)"')
_PX_ITEM = re.compile(rb'"code":"([^"\\]*)","is_or":(?:true|false),"drg_impact":"([A-Z_]*)"')
_FINAL_IMPACT_BYTES = (b"FINAL", b"BOTH")


class _Unreadable(Exception):
    pass


def _value(raw: bytes, key: bytes, start: int) -> tuple[bytes, int]:
    """The scalar after `key` (a number, null, or a string without escapes) and where it ends."""
    i = raw.find(key, start)
    if i < 0:
        raise _Unreadable
    i += len(key)
    if raw[i] == 34:  # '"'
        j = raw.find(b'"', i + 1)
        value = raw[i + 1:j]
        if b"\\" in value:
            raise _Unreadable  # an escape: leave it to json
        return value, j + 1
    j = raw.find(b",", i)
    return raw[i:j], j


def _number_text(value: bytes, width: int) -> str | None:
    return None if value == b"null" else value.decode().zfill(width)


def _read_one(raw: bytes) -> tuple:
    """`extract_result(json.loads(raw))` with the code lists joined by _SEP, reading only what an
    audit keeps (bytes.find over the answer; a full json.loads costs more than the rest of the
    Python work per claim). Raises _Unreadable on anything unexpected."""
    initial, at = _value(raw, b'"initial_drg":', 0)
    drg, at = _value(raw, b'"final_drg":', at)
    mdc, at = _value(raw, b'"final_mdc":', at)
    desc, at = _value(raw, b'"final_drg_description":', at)
    return_code, at = _value(raw, b'"return_code":', at)
    s0 = raw.find(b'"sdx_output":[', at)
    p0 = raw.find(b'"proc_output":[', s0) if s0 >= 0 else -1
    g0 = raw.find(b'"grouper_flags":', p0) if p0 >= 0 else -1
    if g0 < 0:
        raise _Unreadable
    mcc, cc, severity, hac = [], [], [], []
    if raw[s0 + 14] != 93:  # ']': no secondaries
        items = list(_SDX_ITEM.finditer(raw, s0, p0))
        if len(items) != raw.count(b'{"code":', s0, p0):
            raise _Unreadable
        for k, item in enumerate(items):
            end = items[k + 1].start() if k + 1 < len(items) else p0
            code, level = item.group(1).decode(), item.group(2)
            hac_met = raw.find(b'"HAC_CRITERIA_MET"', item.end(), end) >= 0
            if hac_met:
                hac.append(code)
            if (level == b"CC" or level == b"MCC") and raw.find(b'"EXCLUDED"', item.end(), end) < 0:
                severity.append(f"{code}:{level.decode()}")
                if item.group(3) in _FINAL_IMPACT_BYTES and not hac_met:
                    (mcc if level == b"MCC" else cc).append(code)
    px = []
    if raw[p0 + 15] != 93:
        items = list(_PX_ITEM.finditer(raw, p0, g0))
        if len(items) != raw.count(b'{"code":', p0, g0):
            raise _Unreadable
        px = [p.group(1).decode() for p in items if p.group(2) in _FINAL_IMPACT_BYTES]
    return (_number_text(drg, 3), None if mdc in (b"null", b"0") else _number_text(mdc, 2),
            return_code.decode() or "UNKNOWN", None if desc in (b"null", b"") else desc.decode(),
            _number_text(initial, 3), _SEP.join(mcc), _SEP.join(cc), _SEP.join(severity), _SEP.join(px),
            _SEP.join(hac))


def _read_json(raw: bytes | None) -> tuple:
    if raw is None:
        return (None, None, "GROUPER_ERROR", None, None, "", "", "", "", "")
    values = extract_result(json.loads(raw))
    return values[:5] + tuple(_SEP.join(v) for v in values[5:])


def _read_row(raw: bytes | None) -> tuple:
    try:
        return _read_one(raw)  # type: ignore[arg-type]
    except (_Unreadable, TypeError, IndexError, ValueError):
        return _read_json(raw)


def _rows_table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [()] * len(RESULT_COLUMNS)
    table = {}
    for name, values in zip(RESULT_COLUMNS, columns):
        arr = pa.array(values, pa.string())
        if name in LIST_COLUMNS:
            arr = pc.if_else(pc.equal(arr, ""), pa.scalar([], _LIST), pc.split_pattern(arr, _SEP))
        table[name] = arr
    return pa.table(table, schema=_RESULT_SCHEMA)


def read_results(raw: list[bytes | None]) -> pa.Table:
    """The grouper's answers as a table (RESULT_COLUMNS); None (a failed call) -> GROUPER_ERROR."""
    return _rows_table([_read_row(r) for r in raw])


# ---------------------------------------------------------------------------------------------
# The native calls
# ---------------------------------------------------------------------------------------------

def _call_native(grouper, requests: list[bytes]) -> list[bytes | None]:
    """Nothing but the native call in the loop: the GIL is free for the other thread meanwhile."""
    call, free, read, ctx = grouper.lib.msdrg_group_json, grouper.lib.msdrg_string_free, ctypes.string_at, grouper.ctx
    out: list[bytes | None] = []
    append = out.append
    for req in requests:
        ptr = call(ctx, req)
        if ptr:
            append(read(ptr))
            free(ptr)
        else:
            append(None)
    return out


# Process mode: one grouper per worker process, opened by the pool's initializer.
_PROCESS_GROUPER = None


def _worker_context():
    """Start method of the worker processes: a fork server that has this module imported already,
    so a worker starts in milliseconds, and the calling process (maybe threaded) is never forked."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["audits.revenue.grouping"])  # no effect once the server runs
    return context


def _process_init() -> None:
    global _PROCESS_GROUPER
    import msdrg

    _PROCESS_GROUPER = msdrg.MsdrgGrouper()


def _process_chunk(requests: list[bytes]) -> list[tuple]:
    """Native calls and reading in the worker: only small tuples of text travel back."""
    return [_read_row(r) for r in _call_native(_PROCESS_GROUPER, requests)]


class MsdrgAdapter:
    """The `msdrg` package as a `Grouper` (see the module doc for the design and the POA policy).

    workers: how many cores to use (1 for a plain serial run).
    mode: 'auto' (default) uses worker processes for large batches (at least `process_threshold`
    distinct code sets, Linux) and threads otherwise; 'threads' or 'processes' force one.
    A process pool that cannot start falls back to threads (noted in `last_run`).
    After each `group_many`, `last_run` holds rows, distinct code sets, ungroupable, seconds, how.
    """

    name = "msdrg"

    def __init__(self, workers: int = 2, mode: str = "auto", chunk_size: int = 2000, batch_size: int = 50_000,
                 process_threshold: int = 20_000):
        import msdrg

        if mode not in ("auto", "threads", "processes"):
            raise ValueError(f"mode must be auto, threads or processes, not {mode!r}")
        self._msdrg = msdrg
        self.workers = max(1, int(workers))
        self.mode = mode
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.process_threshold = process_threshold
        self.version_string = f"msdrg {msdrg.__version__}"
        self.supported_versions = tuple(msdrg.MsdrgGrouper.available_versions())
        self.last_run: dict = {}
        self._how = ""

    def _requests(self, claims: pd.DataFrame, ok: np.ndarray, *columns: np.ndarray) -> dict[str, pa.Array]:
        """`build_requests` by blocks of `batch_size` rows in `workers` threads (each row's request
        depends on that row only). pyarrow compute releases the GIL, and small blocks reuse memory
        where one pass over the whole universe keeps touching fresh pages: 1,000,000 claims take
        ~1.3 s this way against ~6 s in one block, time when the grouping cores were idle."""
        size = self.batch_size
        if len(claims) <= size:
            return build_requests(claims, ok, *columns)

        def block(start: int) -> dict[str, pa.Array]:
            end = start + size
            return build_requests(claims.iloc[start:end], ok[start:end], *(c[start:end] for c in columns))

        with ThreadPoolExecutor(self.workers, thread_name_prefix="msdrg-requests") as pool:
            parts = list(pool.map(block, range(0, len(claims), size)))
        return {name: pa.concat_arrays([part[name] for part in parts]) for name in parts[0]}

    def _native(self, requests: list[bytes]) -> list[bytes | None]:
        size = self.chunk_size
        starts = list(range(0, len(requests), size))
        workers = min(self.workers, len(starts))
        results: list = [None] * len(requests)
        queue = iter(starts)
        lock = threading.Lock()

        def drain() -> None:
            grouper = self._msdrg.MsdrgGrouper()  # one native context per thread
            try:
                while True:
                    with lock:
                        start = next(queue, None)
                    if start is None:
                        return
                    results[start:start + size] = _call_native(grouper, requests[start:start + size])
            finally:
                grouper.close()

        if workers <= 1:
            drain()
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="msdrg") as pool:
                for future in [pool.submit(drain) for _ in range(workers)]:
                    future.result()
        return results

    def _in_processes(self, requests: list[bytes]) -> pa.Table:
        """Worker processes group and read; their rows become a table per `batch_size` as they
        arrive, so a million claims never sit here as Python tuples all at once."""
        from concurrent.futures import ProcessPoolExecutor

        size = max(self.chunk_size, 5000)
        tables, rows = [], []
        with ProcessPoolExecutor(self.workers, mp_context=_worker_context(), initializer=_process_init) as pool:
            for part in pool.map(_process_chunk, (requests[i:i + size] for i in range(0, len(requests), size))):
                rows.extend(part)
                if len(rows) >= self.batch_size:
                    tables.append(_rows_table(rows))
                    rows = []
        if rows or not tables:
            tables.append(_rows_table(rows))
        return pa.concat_tables(tables)

    def group_requests(self, requests: list[bytes]) -> pa.Table:
        """Group distinct request JSONs; one result row each (RESULT_COLUMNS)."""
        use_processes = self.workers > 1 and (
            self.mode == "processes"
            or (self.mode == "auto" and len(requests) >= self.process_threshold and sys.platform == "linux"))
        if use_processes:
            try:
                table = self._in_processes(requests)
                self._how = f"{self.workers} processes"
                return table
            except (OSError, RuntimeError, ValueError, BrokenProcessPool) as exc:
                self._how = f"{self.workers} threads (process pool failed: {exc.__class__.__name__})"
        else:
            self._how = f"{self.workers} thread{'s' if self.workers > 1 else ''}"
        tables = [read_results(self._native(requests[start:start + self.batch_size]))
                  for start in range(0, len(requests), self.batch_size)]
        return pa.concat_tables(tables) if tables else _RESULT_SCHEMA.empty_table()

    def group_many(self, claims: pd.DataFrame) -> pd.DataFrame:
        started = time.perf_counter()
        n = len(claims)
        version = pd.to_numeric(claims["version"], errors="coerce")
        age = pd.to_numeric(claims["age"], errors="coerce")
        sex = claims["sex"].astype("string").str.strip().str.upper().map(SEX_CODES)
        status = pd.to_numeric(claims["discharge_status"].astype("string").str.strip(), errors="coerce")
        exempt = (claims["hospital_poa_exempt"].astype("boolean").fillna(False).to_numpy(dtype=bool)
                  if "hospital_poa_exempt" in claims else np.zeros(n, dtype=bool))

        reason = np.full(n, None, dtype=object)
        checks = [
            (~version.isin(self.supported_versions).to_numpy(), UNSUPPORTED_VERSION),
            ((age.isna() | (age < 0) | (age > 124) | (age != age.round())).to_numpy(), "INVALID_AGE"),
            (sex.isna().to_numpy(), "INVALID_SEX"),
            ((status.isna() | (status < 0) | (status != status.round())).to_numpy(), "INVALID_DISCHARGE_STATUS"),
        ]
        for bad, why in checks:
            reason[bad & (reason == None)] = why  # noqa: E711 (element-wise)
        ok = reason == None  # noqa: E711

        def ints(s: pd.Series) -> np.ndarray:
            return s.where(ok, 0).fillna(0).to_numpy(dtype=np.int64)

        built = self._requests(claims, ok, ints(version), ints(age), ints(sex), ints(status), exempt)
        request = built["request"]
        reason[ok & ~pc.is_valid(request).to_numpy(zero_copy_only=False)] = "NO_PRINCIPAL_DX"

        # Group each distinct code set once. One hash pass gives the distinct requests (first seen
        # first, nulls left out) and each row's index among them: half the time of unique + index_in.
        encoded = pc.dictionary_encode(request)
        distinct, index = encoded.dictionary, encoded.indices
        grouped = self.group_requests(distinct.cast(pa.binary()).to_pylist())
        rows = grouped.take(index)
        columns = {}
        for name in RESULT_COLUMNS:
            col = rows.column(name)
            if name in LIST_COLUMNS:
                col = pc.fill_null(col, pa.scalar([], _LIST))
            elif name == "return_code":
                col = pc.coalesce(col, pa.array(reason, pa.string()))
            columns[name] = col
        for name in ("hospital_status", "poa_policy", "poa_filled_codes"):
            columns[name] = built[name]
        out = pa.table(columns).to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None)
        out.insert(0, "key", claims["key"].to_numpy())
        self.last_run = {
            "rows": n, "distinct_code_sets": len(distinct),
            "ungroupable": int((out["return_code"] != "OK").sum()),
            "seconds": round(time.perf_counter() - started, 3), "workers": self.workers, "how": self._how,
        }
        return out[OUTPUT_COLUMNS]


def msdrg_versions() -> tuple[int, ...]:
    """The MS-DRG versions the installed msdrg carries (msdrg 1.2.0: 400, 401, ... 440 = v40.0 to v44.0,
    FY2023-FY2027, including v40.1, whose April 2023 code additions it groups)."""
    import msdrg
    return tuple(msdrg.MsdrgGrouper.available_versions())
