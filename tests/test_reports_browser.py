"""The report pages in a real browser: headless Chromium (Debian package `chromium`) driven over the
Chrome DevTools Protocol on a pipe (--remote-debugging-pipe): no port, no download, no extra package.

Per page: no JavaScript error (exceptions, console errors, CSP violations), every figure rendered
(plot containers present with traces and an SVG), tables filled, no request leaves file://, no dialog
opened (a planted `<script>alert(1)</script>` note shows as text and never runs), a full-page screenshot.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pytest

from reports import write_reports

NOTE = "<script>alert(1)</script>"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    override = os.environ.get("CHROMIUM")
    if override and Path(override).exists():
        return override
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


class DevTools:
    """Minimal CDP client over Chromium's debugging pipe (requests on fd 3, replies on fd 4, NUL-framed)."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Park the child's ends above 9 so the dup2 onto 3 and 4 cannot clobber one another.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire():  # runs in the child before exec
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
                "--hide-scrollbars", f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=wire)
        os.close(child_r)
        os.close(child_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._events.put(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._next_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {method}")
                self._cond.wait(left)
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def events(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait_event(self, method: str, session: str, timeout: float) -> list[dict]:
        """Events received until `method` arrives (inclusive) for `session`."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return seen
        raise TimeoutError(f"{method} not received in {timeout}s")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


PROBE = """JSON.stringify((function(){
  var divs = Array.prototype.slice.call(document.querySelectorAll('div.plotly-graph-div'));
  return {
    figures: divs.length,
    plotted: document.querySelectorAll('.js-plotly-plot').length,
    traces: divs.map(function(d){ return (d.data || []).length; }),
    svgs: divs.map(function(d){ return d.querySelectorAll('svg.main-svg').length; }),
    tables: Array.prototype.slice.call(document.querySelectorAll('div.datatable')).map(function(t){
      return t.querySelectorAll('tbody tr').length; }),
    text: document.body.innerText,
    scripts_in_tables: document.querySelectorAll('div.datatable script').length
  };
})())"""


def open_page(tools: DevTools, path: Path, screenshot: Path, expected_figures: int, script: str | None = None) -> dict:
    """Load `path` in a fresh tab; returns the probe result plus errors, requests and dialogs seen, and
    the JSON result of `script` run once the figures are drawn."""
    target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.send(f"{domain}.enable", session=session)
    tools.send("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    tools.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    events = tools.wait_event("Page.loadEventFired", session, timeout=30)
    deadline, probe = time.monotonic() + 20, {}
    while time.monotonic() < deadline:
        result = tools.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)
        probe = json.loads(result["result"]["value"])
        if probe["figures"] >= expected_figures and probe["plotted"] == probe["figures"] \
                and all(probe["svgs"]):
            break
        time.sleep(0.2)
    if script:
        result = tools.send("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=session)
        probe["script"] = json.loads(result["result"]["value"])
    time.sleep(0.3)  # let late console messages arrive
    metrics = tools.send("Page.getLayoutMetrics", session=session)
    height = min(int(metrics["cssContentSize"]["height"]), 12000)
    shot = tools.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}}, session=session)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    events += [e for e in tools.events()]
    mine = [e for e in events if e.get("sessionId") == session]
    errors = [e["params"] for e in mine if e["method"] == "Runtime.exceptionThrown"]
    errors += [e["params"] for e in mine if e["method"] == "Runtime.consoleAPICalled"
               and e["params"].get("type") in ("error", "assert")]
    errors += [e["params"]["entry"] for e in mine if e["method"] == "Log.entryAdded"
               and e["params"]["entry"].get("level") == "error"]
    requests = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
    dialogs = [e["params"] for e in mine if e["method"] == "Page.javascriptDialogOpening"]
    for _ in dialogs:
        tools.send("Page.handleJavaScriptDialog", {"accept": True}, session=session)
    tools.send("Target.closeTarget", {"targetId": target})
    return {**probe, "errors": errors, "requests": requests, "dialogs": dialogs}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """The real pipeline on a small demo (600 claims, 120 audited), every review note set to a script tag."""
    from audits.demo.config import DemoConfig
    from audits.demo.generate import generate_demo
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("browser_reports")
    paths = generate_demo(root / "input", DemoConfig(n_claims=600, audit_sample=120))
    with open(paths["reviews"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["notes"] = NOTE
    with open(paths["reviews"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    workdir = root / "work"
    assert main(["run", "--claims", str(paths["claims"]), "--reviews", str(paths["reviews"]),
                 "--universe", str(paths["claims"]), "--workdir", str(workdir), "--period", "2026-11"]) == 0
    run_info = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    out = root / "reports"
    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    try:
        write_reports(con, "2026-11", out, run_info)
    finally:
        con.close()
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary found (Debian: apt-get install -y chromium; or set CHROMIUM=/path)")
    tools = DevTools(binary, tmp_path_factory.mktemp("chromium_profile"))
    try:
        tools.send("Browser.getVersion", timeout=30)
        yield tools
    finally:
        tools.close()


# Figures each page draws on the demo data (the compliance page depends on which flag tables exist; the
# audit page's trend needs 3 audit periods, this run has one).
MIN_FIGURES = {"index.html": 0, "audit.html": 4, "revenue.html": 6, "compliance.html": 0}


@pytest.mark.parametrize("name", ["index.html", "audit.html", "revenue.html", "compliance.html"])
def test_page_renders_in_chromium(browser, report_dir, name, tmp_path):
    html = (report_dir / name).read_text(encoding="utf-8")
    expected = html.count('class="plotly-graph-div"')
    assert expected >= MIN_FIGURES[name]
    shot = tmp_path / f"{name}.png"
    result = open_page(browser, report_dir / name, shot, expected)

    assert result["errors"] == [], f"JavaScript errors on {name}: {result['errors']}"
    assert result["figures"] == expected
    assert result["plotted"] == expected, f"{name}: {result['plotted']} of {expected} figures plotted"
    assert all(t > 0 for t in result["traces"]), f"{name}: a figure without traces: {result['traces']}"
    assert all(s > 0 for s in result["svgs"]), f"{name}: a figure without SVG: {result['svgs']}"
    assert all(rows > 0 for rows in result["tables"]), f"{name}: an empty table: {result['tables']}"
    assert all(rows <= 50 for rows in result["tables"])  # paginated
    offsite = [u for u in result["requests"] if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert offsite == [], f"{name} requested {offsite}"
    assert result["dialogs"] == []
    assert result["scripts_in_tables"] == 0
    assert shot.stat().st_size > 10_000
    if name == "audit.html":
        assert NOTE in result["text"]  # the note is shown as text...
    keep = os.environ.get("REPORT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / name.replace(".html", ".png"))


INTERACT = """JSON.stringify((function(){
  var box = document.getElementById('table-target-areas');
  var info = function(){ return box.querySelector('.controls span').textContent; };
  var column = function(i){ return Array.prototype.map.call(box.querySelectorAll('tbody tr'),
    function(tr){ return tr.children[i].textContent; }); };
  var out = {first: info()};
  box.querySelectorAll('.controls button')[1].click();           // Next
  out.second = info();
  var p80 = box.querySelectorAll('th')[9];                        // 'Peers 80th' (a percent)
  p80.click(); out.descending = column(9); out.sort1 = p80.getAttribute('aria-sort');
  p80.click(); out.ascending = column(9); out.sort2 = p80.getAttribute('aria-sort');
  var filter = box.querySelector('input');
  filter.value = 'F001'; filter.dispatchEvent(new Event('input'));
  out.filtered = info(); out.values = column(0);
  return out;
})())"""


def test_tables_sort_paginate_and_filter(browser, report_dir, tmp_path):
    html = (report_dir / "compliance.html").read_text(encoding="utf-8")
    result = open_page(browser, report_dir / "compliance.html", tmp_path / "compliance.png",
                       html.count('class="plotly-graph-div"'), script=INTERACT)
    assert result["errors"] == []
    got = result["script"]
    total = int(re.search(r"of (\d+)", got["first"]).group(1))
    assert total > 50
    assert got["first"] == f"rows 1\u201350 of {total}"
    assert got["second"] == f"rows 51\u2013{min(100, total)} of {total}"
    numbers = lambda texts: [float(t.rstrip("%")) for t in texts if t]  # noqa: E731
    assert got["sort1"] == "descending"
    assert numbers(got["descending"]) == sorted(numbers(got["descending"]), reverse=True)
    assert got["sort2"] == "ascending" and numbers(got["ascending"]) == sorted(numbers(got["ascending"]))
    assert len(got["descending"]) == 50
    assert "(filtered from" in got["filtered"] and set(got["values"]) == {"F001"}
