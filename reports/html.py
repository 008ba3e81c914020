"""Self-contained HTML pages: headline strip, Plotly figures, sortable paginated tables.

Safety rules, in one place:
- every value written into the markup here goes through `esc` (html.escape);
- table rows travel as JSON in <script type="application/json"> with < > & U+2028 U+2029 written as
  \\uXXXX escapes, so no value can close the script element; the table script puts them on the page with
  textContent, never innerHTML;
- figures are serialised by plotly's own encoder, which writes < > / as \\u003c \\u003e \\u002f
  (checked by `figure_div`, which refuses any output containing "</script" inside the figure JSON);
- plotly.js is embedded once per page, in <head>; nothing is loaded from the network (system fonts only).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

PAGE_SIZE = 50
MAX_TABLE_ROWS = 5000

CSS = """
:root{--ink:#1d2733;--muted:#5b6b7b;--line:#d9e0e7;--bg:#f6f8fa;--accent:#1f5f99;--good:#1a7f37;--bad:#c62828}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:var(--ink);background:#fff;font-size:15px;line-height:1.45}
header.top{background:var(--ink);color:#fff;padding:14px 28px;display:flex;align-items:baseline;gap:28px;flex-wrap:wrap}
header.top h1{font-size:20px;margin:0;font-weight:600}
header.top nav a{color:#cfe3f7;margin-right:16px;text-decoration:none}
header.top nav a.current{color:#fff;font-weight:600;border-bottom:2px solid #fff}
main{padding:18px 28px 48px;max-width:1400px;margin:0 auto}
.meta{color:var(--muted);font-size:13px;margin:4px 0 14px}
.headline{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 22px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:190px;background:var(--bg);flex:1 1 190px}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.card .value{font-size:24px;font-weight:650;margin-top:2px}
.card .detail{font-size:12.5px;color:var(--muted)}
.card.good .value{color:var(--good)} .card.bad .value{color:var(--bad)}
section{margin:26px 0}
section h2{font-size:18px;margin:0 0 4px;border-bottom:1px solid var(--line);padding-bottom:4px}
p.note{color:var(--muted);font-size:13.5px;margin:4px 0 10px}
p.unavailable{background:#fff8e1;border:1px solid #f3d27a;border-radius:6px;padding:8px 12px;font-size:14px}
.figure{margin:10px 0 18px;border:1px solid var(--line);border-radius:8px;padding:4px}
.datatable .controls{display:flex;gap:10px;align-items:center;margin:6px 0;font-size:13px;color:var(--muted);flex-wrap:wrap}
.datatable input{padding:4px 8px;border:1px solid var(--line);border-radius:4px;font-size:13px}
.datatable button{padding:3px 10px;border:1px solid var(--line);background:#fff;border-radius:4px;cursor:pointer}
.datatable button:disabled{opacity:.4;cursor:default}
.tablewrap{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table.data{border-collapse:collapse;width:100%;font-size:13px}
table.data th{position:sticky;top:0;background:var(--bg);text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);cursor:pointer;white-space:nowrap;user-select:none}
table.data th.num,table.data td.num{text-align:right}
table.data th[aria-sort=ascending]::after{content:" \\25B2"} table.data th[aria-sort=descending]::after{content:" \\25BC"}
table.data td{padding:5px 8px;border-bottom:1px solid #eef1f4;vertical-align:top;white-space:nowrap}
table.data td.long{white-space:pre-line;min-width:240px;max-width:560px;overflow-wrap:anywhere}
table.data tr:hover td{background:#f3f7fb}
table.kv td{padding:4px 12px 4px 0;border-bottom:1px solid #eef1f4;font-size:14px;vertical-align:top}
table.kv td:first-child{color:var(--muted);white-space:nowrap}
ul.links li{margin:6px 0}
footer{color:var(--muted);font-size:12px;margin-top:40px}
"""

# Vanilla JS: sort on header click, pages of PAGE_SIZE rows, a text filter. Cells use textContent only.
TABLE_JS = """
(function(){
  var money=new Intl.NumberFormat('en-US',{style:'currency',currency:'USD'});
  var whole=new Intl.NumberFormat('en-US',{maximumFractionDigits:0});
  function fmt(v,t){
    if(v===null||v===undefined||v==='')return '';
    if(typeof v!=='number')return String(v);
    switch(t){
      case 'money':return money.format(v);
      case 'int':return whole.format(v);
      case 'pct':return (v*100).toFixed(1)+'%';
      case 'p':return v<0.001?v.toExponential(2):v.toFixed(3);
      case 'float':return (Math.abs(v)>=100?v.toFixed(1):v.toFixed(3));
      default:return String(v);
    }
  }
  function cmp(a,b){
    var an=(a===null||a===undefined||a===''),bn=(b===null||b===undefined||b==='');
    if(an&&bn)return 0; if(an)return 1; if(bn)return -1;
    if(typeof a==='number'&&typeof b==='number')return a-b;
    return String(a).localeCompare(String(b),undefined,{numeric:true});
  }
  function build(box){
    var spec=JSON.parse(document.getElementById(box.getAttribute('data-source')).textContent);
    var cols=spec.columns,all=spec.rows,view=all.slice(),page=0,size=spec.page_size||50,sortCol=-1,asc=true;
    var controls=document.createElement('div');controls.className='controls';
    var filter=document.createElement('input');filter.type='search';filter.placeholder='Filter rows';
    var prev=document.createElement('button');prev.textContent='\\u2039 Prev';
    var next=document.createElement('button');next.textContent='Next \\u203a';
    var info=document.createElement('span');
    controls.appendChild(filter);controls.appendChild(prev);controls.appendChild(next);controls.appendChild(info);
    var wrap=document.createElement('div');wrap.className='tablewrap';
    var table=document.createElement('table');table.className='data';
    var thead=document.createElement('thead'),hr=document.createElement('tr'),tbody=document.createElement('tbody');
    cols.forEach(function(c,i){
      var th=document.createElement('th');th.textContent=c.label;th.title='Sort by '+c.label;
      if(c.type!=='text'&&c.type!=='long')th.className='num';
      th.addEventListener('click',function(){
        if(sortCol===i){asc=!asc;}else{sortCol=i;asc=(c.type==='text'||c.type==='long');}
        hr.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        view.sort(function(a,b){var r=cmp(a[i],b[i]);return asc?r:-r;});
        page=0;render();
      });
      hr.appendChild(th);
    });
    thead.appendChild(hr);table.appendChild(thead);table.appendChild(tbody);wrap.appendChild(table);
    box.appendChild(controls);box.appendChild(wrap);
    function render(){
      var pages=Math.max(1,Math.ceil(view.length/size));
      if(page>=pages)page=pages-1;
      var frag=document.createDocumentFragment();
      view.slice(page*size,(page+1)*size).forEach(function(row){
        var tr=document.createElement('tr');
        cols.forEach(function(c,i){var td=document.createElement('td');td.textContent=fmt(row[i],c.type);
          if(c.type==='long')td.className='long';else if(c.type!=='text')td.className='num';tr.appendChild(td);});
        frag.appendChild(tr);
      });
      tbody.replaceChildren(frag);
      info.textContent=view.length?('rows '+(page*size+1)+'\\u2013'+Math.min(view.length,(page+1)*size)+' of '+view.length+
        (view.length!==all.length?(' (filtered from '+all.length+')'):'')):'no rows';
      prev.disabled=page===0;next.disabled=page>=pages-1;
    }
    prev.addEventListener('click',function(){page--;render();});
    next.addEventListener('click',function(){page++;render();});
    filter.addEventListener('input',function(){
      var q=filter.value.toLowerCase();
      view=q?all.filter(function(r){return r.some(function(v){return v!==null&&String(v).toLowerCase().indexOf(q)>=0;});}):all.slice();
      page=0;render();
    });
    render();
  }
  document.querySelectorAll('div.datatable[data-source]').forEach(build);
})();
"""


def esc(value) -> str:
    """HTML-escape any value for text or attribute context."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def script_json(payload) -> str:
    """JSON safe inside a <script> element: nothing in it can end the element or start a comment."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    return str(value)


# -------------------------------------------------------------------------------- number format


def money(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value)
    sign = "\u2212" if value < 0 else ("+" if signed and value > 0 else "")
    return f"{sign}${abs(value):,.2f}"


def money0(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value)
    sign = "\u2212" if value < 0 else ""
    return f"{sign}${abs(value):,.0f}"


def pct(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value) * 100:.{digits}f}%"


def count(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{int(value):,}"


# ------------------------------------------------------------------------------------ components


SUPPRESSED = "<11"  # shown in place of a count or rate under 11 (CMS / PEPPER small-cell rule)
FORMATS = {"pct": pct, "money": money, "money0": money0, "int": count,
           "signed_money": lambda v: money(v, signed=True)}


@dataclass
class Card:
    """One headline figure. `number` (with `fmt`) is the figure itself: the page shows it formatted and
    embeds it as data; `parts` are the other figures its detail line quotes, embedded too."""

    label: str
    value: str
    detail: str = ""
    tone: str = ""  # '' | 'good' | 'bad'
    key: str = ""
    number: float | int | None = None
    fmt: str = ""
    parts: dict | None = None


def figure_card(key: str, label: str, number, fmt: str, detail: str = "", tone: str = "",
                parts: dict | None = None) -> Card:
    """A card whose shown value is `number` formatted: the text and the embedded figure cannot differ."""
    missing = number is None or (isinstance(number, float) and math.isnan(number))
    return Card(label, "n/a" if missing else FORMATS[fmt](number), detail, tone, key,
                None if missing else _plain(number), fmt, {k: _plain(v) for k, v in (parts or {}).items()})


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return value


def headline(cards: list[Card]) -> str:
    items = "".join(
        f'<div class="card {esc(c.tone)}"{f" data-key={chr(34)}{esc(c.key)}{chr(34)}" if c.key else ""}>'
        f'<div class="label">{esc(c.label)}</div>'
        f'<div class="value">{esc(c.value)}</div><div class="detail">{esc(c.detail)}</div></div>' for c in cards)
    return f'<div class="headline">{items}</div>'


class PageData:
    """The figures a page shows, as data: its cards and the source of each of its tables. Embedded in
    the page (`<script type="application/json" id="page-figures">`) for checks and for other tools."""

    def __init__(self):
        self.cards: list[Card] = []
        self.tables: dict[str, str] = {}

    def headline(self, cards: list[Card]) -> str:
        self.cards.extend(cards)
        return headline(cards)

    def table(self, table: "Table", source: str) -> str:
        """Render `table`, recording which warehouse table (or derivation) its figures come from."""
        self.tables[table.table_id] = source
        return table.render()

    def payload(self) -> dict:
        return {"cards": [{"key": c.key, "label": c.label, "value": c.number, "format": c.fmt, "text": c.value,
                           "parts": c.parts or {}} for c in self.cards if c.key],
                "tables": self.tables}


@dataclass
class Column:
    key: str
    label: str
    type: str = "text"  # text | long (wrapping text) | int | money | pct | p | float


@dataclass
class Table:
    table_id: str
    frame: pd.DataFrame
    columns: list[Column]
    total_rows: int | None = None  # rows before capping, when the frame was capped upstream
    csv_name: str | None = None
    cap: int = MAX_TABLE_ROWS
    extra_note: str = ""

    def render(self) -> str:
        frame = self.frame.head(self.cap)
        total = self.total_rows if self.total_rows is not None else len(self.frame)
        values = []
        for col in self.columns:
            series = frame[col.key] if col.key in frame else pd.Series([None] * len(frame), index=frame.index)
            # Bounded by `cap` rows: plain lists, None for missing (JSON null), never NaN.
            if col.type in ("text", "long"):
                missing = series.isna().to_numpy()
                texts = series.astype("string").fillna("").tolist()
                values.append([None if m else t for t, m in zip(texts, missing)])
            else:
                numbers = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
                finite = np.isfinite(numbers)
                cast = int if col.type == "int" else float
                hidden = (series.astype("object") == SUPPRESSED).to_numpy()
                values.append([SUPPRESSED if h else cast(x) if ok else None
                               for x, ok, h in zip(numbers.tolist(), finite, hidden)])
        rows = [list(r) for r in zip(*values)] if values else []
        payload = {"columns": [{"label": c.label, "type": c.type, "key": c.key} for c in self.columns], "rows": rows,
                   "page_size": PAGE_SIZE}
        note = ""
        if total > len(rows):
            where = f"; full list in {self.csv_name}" if self.csv_name else ""
            note = f'<p class="note">Showing {len(rows):,} of {total:,} rows{esc(where)}.</p>'
        extra = f'<p class="note">{esc(self.extra_note)}</p>' if self.extra_note else ""
        source = f"{self.table_id}-data"
        return (f'{note}{extra}<div class="datatable" id="{esc(self.table_id)}" data-source="{esc(source)}"'
                f' data-rows="{len(rows)}" data-total="{total}"></div>'
                f'<script type="application/json" id="{esc(source)}">{script_json(payload)}</script>')


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A figure as a <div> + script; plotly.js itself is in the page head (include_plotlyjs=False)."""
    markup = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                         config={"displaylogo": False, "responsive": True,
                                 "modeBarButtonsToRemove": ["sendDataToCloud"]})
    body = markup.split("<script", 1)[1] if "<script" in markup else ""
    if "</script" in body[: body.rfind("</script")].lower() or "<!--" in body:
        raise ValueError(f"figure {div_id}: serialised data would break out of its <script> element")
    return f'<div class="figure">{markup}</div>'


def unavailable(text: str) -> str:
    return f'<p class="unavailable">{esc(text)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(title: str, *parts: str, intro: str = "", section_id: str = "") -> str:
    sid = f' id="{esc(section_id)}"' if section_id else ""
    intro_html = note(intro) if intro else ""
    return f"<section{sid}><h2>{esc(title)}</h2>{intro_html}{''.join(parts)}</section>"


def kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def links(items: list[tuple[str, str, str]]) -> str:
    """(href, text, description) list; hrefs are our own relative file names."""
    body = "".join(f'<li><a href="{esc(href)}">{esc(text)}</a> \u2014 {esc(desc)}</li>' for href, text, desc in items)
    return f'<ul class="links">{body}</ul>'


NAV = (("index.html", "Overview"), ("audit.html", "Audit"), ("revenue.html", "Revenue"),
       ("compliance.html", "Compliance"))


def page(title: str, current: str, subtitle: str, body: str, data: PageData | None = None) -> str:
    """The whole document. plotly.js is inlined once, in <head>, when the page has figures; the page's
    figures as data (`data`) at the end of <main>."""
    if data is not None:
        body += f'\n<script type="application/json" id="page-figures">{script_json(data.payload())}</script>'
    with_plotly = 'class="plotly-graph-div"' in body
    nav = "".join(f'<a href="{href}"{" class=current" if href == current else ""}>{esc(text)}</a>'
                  for href, text in NAV)
    plotly_js = (f"<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>\n"
                 f'<script type="text/javascript">{get_plotlyjs()}</script>') if with_plotly else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n{plotly_js}\n</head>\n<body>\n"
        f'<header class="top"><h1>{esc(title)}</h1><nav>{nav}</nav></header>\n'
        f'<main><p class="meta">{esc(subtitle)}</p>\n{body}\n'
        "<footer>Generated by coding-audit. Self-contained: works offline; patient identifiers are never "
        "included.</footer></main>\n"
        f"<script>{TABLE_JS}</script>\n</body>\n</html>\n")
