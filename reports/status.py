"""The overview page's run-status notice: when a later run of the period failed, the published
overview (which still describes the last successful run) says so. The failed run changes nothing
else in the reports: it replaces only the text between the two markers the page carries."""

from __future__ import annotations

import os
from pathlib import Path

from reports.html import esc

START, END = "<!-- run-status -->", "<!-- /run-status -->"


def placeholder(period: str) -> str:
    return f'<div class="run-status" data-period="{esc(period)}">{START}{END}</div>'


def notice_html(failures: list[dict]) -> str:
    if not failures:
        return ""
    items = "".join(
        f"<li>run {esc(f['run_id'])} started {esc(f['started_at'])}: {esc(f['status'])}"
        f"{' - ' + esc(f['reason']) if f.get('reason') else ''}</li>" for f in failures)
    return ('<p class="note"><strong>A later run of this audit period did not complete.</strong> These pages '
            f"still describe the run below; nothing of the later run was published.</p><ul>{items}</ul>")


def mark_later_failure(workdir: Path, period: str | None, failures: list[dict]) -> list[Path]:
    """Put the notice on reports/<period>/index.html, and on reports/index.html when that page is
    of the same period. Returns the pages changed."""
    if not period or not failures:
        return []
    reports = Path(workdir) / "reports"
    changed = []
    for path in (reports / period / "index.html", reports / "index.html"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if f'data-period="{esc(period)}"' not in text or START not in text:
            continue
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(head + START + notice_html(failures) + END + tail, encoding="utf-8")
        os.replace(tmp, path)
        changed.append(path)
    return changed


def without_notice(text: str) -> str:
    """The page with the notice taken out (what the run that wrote it produced)."""
    if START not in text:
        return text
    head, rest = text.split(START, 1)
    return head + START + END + rest.split(END, 1)[1]
