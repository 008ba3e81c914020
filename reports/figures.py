"""Plotly figure builders: aggregated DataFrames in, `go.Figure` out.

Each builder draws a bounded number of marks whatever the audit size (one bar per position, coder,
chapter pair, DRG shift among the top N...), so pages stay responsive with 100,000 audited claims.
Builders return None when there is nothing to draw; the page then says so in words.

Labels that come from input files (coder, facility, payer, service line, DRG family...) pass through
`plot_label`: plotly.js renders a subset of HTML in text (<b>, <a href>...), so < > & are escaped;
plotly.js turns the entities back into the characters on screen.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from audits.revenue.pricing import money_sum, underpaid_overpaid
from reports.chapters import chapter_label, chapter_number

UNDERPAID_COLOUR = "#1a7f37"   # revenue lost to under-coding: green (money to recover)
OVERPAID_COLOUR = "#c62828"    # refund liability: red
NEUTRAL_COLOUR = "#1f5f99"
MUTED_COLOUR = "#9aa5b1"
SEVERITY_COLOURS = {"high": "#c62828", "medium": "#ef6c00", "low": "#f9a825"}
RATE_LABELS = {"record_error_rate": "Record error rate", "principal_dx_error_rate": "Principal dx error rate",
               "secondary_dx_error_rate": "Secondary dx error rate", "procedure_error_rate": "Procedure error rate"}
FIGURE_HEIGHT = 420


def plot_label(value) -> str:
    """Text from input files, safe for plotly.js's HTML-ish text rendering."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "(missing)"
    return html.escape(str(value), quote=False)


def _labels(values: pd.Series) -> list[str]:
    return [plot_label(v) for v in values.astype("object").where(values.notna(), None).tolist()]


def _layout(fig: go.Figure, title: str, height: int = FIGURE_HEIGHT, **kwargs) -> go.Figure:
    kwargs.setdefault("margin", {"l": 60, "r": 30, "t": 60, "b": 60})
    fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left"}, height=height,
                      template="plotly_white",
                      font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"},
                      **kwargs)
    return fig


def _error_bars(rate, low, high) -> dict:
    rate, low, high = (np.asarray(x, dtype="float64") for x in (rate, low, high))
    return {"type": "data", "symmetric": False, "array": np.nan_to_num(high - rate).round(6).tolist(),
            "arrayminus": np.nan_to_num(rate - low).round(6).tolist(), "thickness": 1.2, "width": 4}


# ----------------------------------------------------------------------------------------- audit


def _position_order(metric: pd.Series) -> pd.Series:
    number = pd.to_numeric(metric.str.extract(r"^dx_position_(\d+)$")[0], errors="coerce")
    return number.fillna(1000)  # dx_omitted last


def position_error_figure(rates: pd.DataFrame) -> go.Figure | None:
    """Error rate by original diagnosis position (1 = principal) with 95% Wilson intervals, plus 'omitted'.

    `rates`: error_rates rows of breakdown 'all' for metrics dx_position_<p> and dx_omitted
    (columns metric, n, errors, rate, ci_low, ci_high, optional small_cell)."""
    frame = rates[rates["metric"].str.match(r"^(dx_position_\d+|dx_omitted)$")].copy()
    frame = frame[frame["n"].fillna(0) > 0]  # a position no audited claim reaches has no rate to draw
    if frame.empty:
        return None
    frame = frame.assign(_order=_position_order(frame["metric"])).sort_values("_order")
    names = np.where(frame["metric"] == "dx_omitted", "omitted (missed)",
                     np.where(frame["_order"] == 1, "1 (principal)", frame["_order"].astype(int).astype(str)))
    labels = np.array([f"{name}<br>n={int(n):,}" for name, n in zip(names, frame["n"])])
    small = frame["small_cell"].fillna(False).astype(bool) if "small_cell" in frame else pd.Series(False, frame.index)
    colours = np.where(small, MUTED_COLOUR, np.where(frame["metric"] == "dx_omitted", OVERPAID_COLOUR, NEUTRAL_COLOUR))
    fig = go.Figure(go.Bar(
        x=labels.tolist(), y=frame["rate"].astype(float).round(6).tolist(),
        error_y=_error_bars(frame["rate"], frame["ci_low"], frame["ci_high"]),
        marker_color=colours.tolist(), name="error rate",
        customdata=np.column_stack([frame["errors"].astype(int), frame["n"].astype(int),
                                    frame["ci_low"].astype(float), frame["ci_high"].astype(float)]).tolist(),
        hovertemplate="position %{x}<br>%{y:.1%} (%{customdata[0]} of %{customdata[1]} claims)"
                      "<br>95% CI %{customdata[2]:.1%}\u2013%{customdata[3]:.1%}<extra></extra>"))
    # Intervals of cells under 11 claims run up to ~80% and would flatten every other bar: they are
    # clipped at the top of the axis (hover still gives the exact interval).
    reliable = frame.loc[~small, "ci_high"].astype(float)
    top = float(reliable.max()) if reliable.notna().any() else float(frame["ci_high"].astype(float).max())
    top = min(1.0, max(top * 1.25, 0.05)) if np.isfinite(top) else 1.0
    return _layout(fig, "Error rate by diagnosis position (95% Wilson interval; grey: fewer than 11 claims)",
                   xaxis={"title": "original diagnosis position", "type": "category"},
                   yaxis={"title": "share of claims with a code there", "tickformat": ".0%", "range": [0, top]})


def error_type_figure(types: pd.DataFrame) -> go.Figure | None:
    """Code-level differences by type, diagnoses and procedures; metric 'error_type:<kind>:<result>'.

    Bars are counts of differences (a claim can have several); hover shows them per 100 audited claims."""
    frame = types[types["metric"].str.startswith("error_type:")].copy()
    if frame.empty:
        return None
    parts = frame["metric"].str.split(":", expand=True)
    frame["kind"], frame["result"] = parts[1], parts[2]
    order = ["deleted", "added", "specificity", "changed", "resequenced", "poa_changed"]
    frame["_order"] = frame["result"].map({r: i for i, r in enumerate(order)}).fillna(len(order))
    fig = go.Figure()
    for kind, name, colour in (("dx", "Diagnoses", NEUTRAL_COLOUR), ("px", "Procedures", "#7b5ea7")):
        sub = frame[frame["kind"] == kind].sort_values("_order")
        if sub.empty:
            continue
        labels = sub["result"].str.replace("poa_changed", "POA changed (not an error)", regex=False)
        fig.add_trace(go.Bar(
            x=labels.tolist(), y=sub["errors"].astype(int).tolist(), name=name, marker_color=colour,
            customdata=(sub["rate"].astype(float) * 100).round(2).tolist(),
            hovertemplate=name + " %{x}: %{y} differences (%{customdata} per 100 claims)<extra></extra>"))
    return _layout(fig, "Differences by type (deleted = over-coded, added = missed)", barmode="group",
                   xaxis={"title": "result"}, yaxis={"title": "differences"})


def chapter_confusion_figure(pairs: pd.DataFrame) -> go.Figure | None:
    """Heatmap of principal-diagnosis errors by ICD-10-CM chapter: original (rows) vs audited (columns).

    `pairs`: columns original_code, audited_code, claims (already counted per code pair)."""
    if pairs.empty:
        return None
    frame = pd.DataFrame({"original": chapter_number(pairs["original_code"]),
                          "audited": chapter_number(pairs["audited_code"]),
                          "claims": pairs["claims"].astype(int).to_numpy()})
    table = frame.pivot_table(index="original", columns="audited", values="claims", aggfunc="sum", fill_value=0)
    chapters = sorted(set(table.index) | set(table.columns))
    table = table.reindex(index=chapters, columns=chapters, fill_value=0)
    labels = [chapter_label(c) for c in chapters]
    fig = go.Figure(go.Heatmap(
        z=table.to_numpy().tolist(), x=labels, y=labels, colorscale="Blues", texttemplate="%{z}",
        hovertemplate="original: %{y}<br>audited: %{x}<br>%{z} claims<extra></extra>", colorbar={"title": "claims"}))
    side = max(FIGURE_HEIGHT, 140 + 38 * len(chapters))
    return _layout(fig, "Principal diagnosis errors by ICD-10-CM chapter (original vs audited)", height=side,
                   xaxis={"title": "audited principal diagnosis chapter", "type": "category", "tickangle": -30},
                   yaxis={"title": "original principal diagnosis chapter", "type": "category", "autorange": "reversed"})


def coder_scorecard_figure(scorecard: pd.DataFrame, overall_rate: float | None = None) -> go.Figure | None:
    """Record error rate per coder with its 95% Wilson interval, worst first; grey = under 11 claims."""
    if scorecard.empty:
        return None
    frame = scorecard.sort_values(["record_error_rate", "audited_claims"], ascending=[False, False])
    small = frame["small_cell"].fillna(False).astype(bool) if "small_cell" in frame else pd.Series(False, frame.index)
    fig = go.Figure(go.Bar(
        x=_labels(frame["coder_id"]), y=frame["record_error_rate"].astype(float).round(6).tolist(),
        error_y=_error_bars(frame["record_error_rate"], frame["record_error_ci_low"], frame["record_error_ci_high"]),
        marker_color=np.where(small, MUTED_COLOUR, NEUTRAL_COLOUR).tolist(), name="record error rate",
        customdata=np.column_stack([frame["record_errors"].astype(int), frame["audited_claims"].astype(int)]).tolist(),
        hovertemplate="coder %{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]} claims)<extra></extra>"))
    if overall_rate is not None and not np.isnan(overall_rate):
        fig.add_hline(y=float(overall_rate), line_dash="dash", line_color="#555",
                      annotation_text=f"all coders {overall_rate:.1%}", annotation_position="top right")
    return _layout(fig, "Record error rate by coder (95% Wilson interval; grey: fewer than 11 claims)",
                   xaxis={"title": "coder", "type": "category"},
                   yaxis={"title": "record error rate", "tickformat": ".0%", "rangemode": "tozero"})


def trend_figure(trend: pd.DataFrame) -> go.Figure | None:
    """Record, principal and secondary error rates by audit period with 95% Wilson intervals."""
    if trend.empty:
        return None
    fig = go.Figure()
    for metric in ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate"):
        sub = trend[trend["metric"] == metric].sort_values("audit_period")
        if sub.empty:
            continue
        fig.add_trace(go.Scatter(
            x=_labels(sub["audit_period"]), y=sub["rate"].astype(float).round(6).tolist(), mode="lines+markers",
            name=RATE_LABELS[metric], error_y=_error_bars(sub["rate"], sub["ci_low"], sub["ci_high"]),
            customdata=sub["n"].astype(int).tolist(),
            hovertemplate="%{x}: %{y:.1%} of %{customdata} claims<extra>" + RATE_LABELS[metric] + "</extra>"))
    return _layout(fig, "Error rates across audit periods (95% Wilson interval)",
                   xaxis={"title": "audit period", "type": "category"},
                   yaxis={"title": "error rate", "tickformat": ".0%", "rangemode": "tozero"})


# --------------------------------------------------------------------------------------- revenue


def payment_totals(regroup: pd.DataFrame) -> dict[str, float]:
    """Totals over priced claims (both sides have a payment): original, underpaid, overpaid, audited."""
    priced = regroup[regroup["delta"].notna()]
    underpaid, overpaid = underpaid_overpaid(priced["delta"].astype(float))
    return {"original": money_sum(priced["original_payment"].astype(float)), "underpaid": underpaid,
            "overpaid": overpaid, "audited": money_sum(priced["audited_payment"].astype(float)),
            "claims": int(len(priced))}


def waterfall_figure(regroup: pd.DataFrame) -> go.Figure | None:
    """Original total payment -> + underpaid -> - overpaid -> audited total, over priced audited claims."""
    totals = payment_totals(regroup)
    if totals["claims"] == 0:
        return None
    y = [totals["original"], totals["underpaid"], -totals["overpaid"],
         round(totals["original"] + totals["underpaid"] - totals["overpaid"], 2)]
    fig = go.Figure(go.Waterfall(
        x=["Original payment", "Underpaid (lost revenue)", "Overpaid (refund liability)", "Audited payment"],
        measure=["absolute", "relative", "relative", "total"], y=y,
        text=[f"${abs(v):,.2f}" for v in y], textposition="outside",
        increasing={"marker": {"color": UNDERPAID_COLOUR}}, decreasing={"marker": {"color": OVERPAID_COLOUR}},
        totals={"marker": {"color": NEUTRAL_COLOUR}}, connector={"line": {"color": "#888"}},
        hovertemplate="%{x}: $%{y:,.2f}<extra></extra>"))
    high = max(totals["original"], totals["audited"], totals["original"] + totals["underpaid"])
    # Zero baseline: bar heights are proportional to dollars, so a 3% change looks like 3%.
    return _layout(fig, f"Payment of the {totals['claims']:,} priced audited claims: original to audited",
                   yaxis={"title": "USD", "tickformat": "$,.0f", "range": [0.0, max(high * 1.12, 1.0)]},
                   showlegend=False)


def drg_shift_links(regroup: pd.DataFrame, top_n: int = 20) -> pd.DataFrame:
    """DRG shifts (original -> audited, priced claims whose DRG changed) by dollars moved, top N kept,
    the rest summed into one 'Other' shift. Columns original_drg, audited_drg, dollars (sum |delta|),
    net (sum delta), claims."""
    changed = regroup[regroup["delta"].notna() & regroup["original_drg"].notna() & regroup["audited_drg"].notna()
                      & (regroup["original_drg"] != regroup["audited_drg"])]
    if changed.empty:
        return pd.DataFrame(columns=["original_drg", "audited_drg", "dollars", "net", "claims"])
    delta = changed["delta"].astype(float)
    pairs = (changed.assign(dollars=delta.abs(), net=delta)
             .groupby(["original_drg", "audited_drg"], as_index=False)
             .agg(dollars=("dollars", "sum"), net=("net", "sum"), claims=("claim_id", "count"))
             .sort_values(["dollars", "claims", "original_drg", "audited_drg"], ascending=[False, False, True, True]))
    top, rest = pairs.head(top_n), pairs.iloc[top_n:]
    if not rest.empty:
        top = pd.concat([top, pd.DataFrame([{"original_drg": "Other", "audited_drg": "Other",
                                             "dollars": rest["dollars"].sum(), "net": rest["net"].sum(),
                                             "claims": int(rest["claims"].sum())}])], ignore_index=True)
    top["dollars"] = top["dollars"].round(2)
    top["net"] = top["net"].round(2)
    return top.reset_index(drop=True)


def drg_sankey_figure(regroup: pd.DataFrame, top_n: int = 20) -> go.Figure | None:
    """Sankey of DRG shifts sized by dollars moved; green links paid more after audit, red less."""
    links = drg_shift_links(regroup, top_n)
    if links.empty:
        return None
    names = {}
    for side in ("original_drg", "audited_drg"):  # number and Table 5 title, when the caller added them
        if f"{side}_label" in regroup:
            names.update(zip(regroup[side].astype("object"), regroup[f"{side}_label"].astype("object")))
    def name(drg) -> str:
        text = str(names.get(drg) or drg)
        return plot_label(text if len(text) <= 56 else text[:55] + "\u2026")

    left = [f"Original {name(d)}" if d != "Other" else "Other original DRGs" for d in links["original_drg"]]
    right = [f"Audited {name(d)}" if d != "Other" else "Other audited DRGs" for d in links["audited_drg"]]
    nodes = list(dict.fromkeys(left)) + list(dict.fromkeys(right))
    index = {name: i for i, name in enumerate(nodes)}
    colours = np.where(links["net"] > 0, "rgba(26,127,55,0.45)", "rgba(198,40,40,0.45)")
    fig = go.Figure(go.Sankey(
        arrangement="snap", valueformat="$,.2f",
        node={"label": nodes, "pad": 12, "thickness": 14, "color": "#5b7083"},
        link={"source": [index[n] for n in left], "target": [index[n] for n in right],
              "value": links["dollars"].astype(float).tolist(), "color": colours.tolist(),
              "customdata": np.column_stack([links["claims"].astype(int), links["net"].astype(float)]).tolist(),
              "hovertemplate": "%{source.label} \u2192 %{target.label}<br>%{value} moved, "
                               "%{customdata[0]} claims, net %{customdata[1]:$,.2f}<extra></extra>"}))
    height = max(FIGURE_HEIGHT, 22 * len(links) + 120)
    return _layout(fig, f"DRG shifts after audit, sized by dollars (top {top_n} shifts; the rest as 'Other')",
                   height=height)


def impact_figure(impact: pd.DataFrame, what: str, top_n: int = 15) -> go.Figure | None:
    """Underpaid (right, green) and overpaid (left, red) dollars per group, net as a diamond; the groups
    with the most dollars at stake first, the rest summed as 'Other'. Columns breakdown_value,
    claims, underpaid_amount, overpaid_amount, net_amount."""
    if impact.empty:
        return None
    frame = impact.assign(_stake=impact["underpaid_amount"].astype(float) + impact["overpaid_amount"].astype(float))
    frame = frame.sort_values(["_stake", "breakdown_value"], ascending=[False, True])
    top, rest = frame.head(top_n), frame.iloc[top_n:]
    labels = _labels(top["breakdown_value"])
    if not rest.empty:
        labels.append(f"Other ({len(rest)} groups)")
        top = pd.concat([top, pd.DataFrame([{
            "claims": rest["claims"].sum(), "underpaid_amount": rest["underpaid_amount"].sum(),
            "overpaid_amount": rest["overpaid_amount"].sum(), "net_amount": rest["net_amount"].sum()}])],
            ignore_index=True)
    labels = [label if len(label) <= 48 else label[:47] + "\u2026" for label in labels]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=top["underpaid_amount"].astype(float).round(2).tolist(), orientation="h",
                         name="underpaid", marker_color=UNDERPAID_COLOUR,
                         hovertemplate="%{y}: underpaid $%{x:,.2f}<extra></extra>"))
    fig.add_trace(go.Bar(y=labels, x=(-top["overpaid_amount"].astype(float)).round(2).tolist(), orientation="h",
                         name="overpaid", marker_color=OVERPAID_COLOUR,
                         hovertemplate="%{y}: overpaid $%{x:,.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(y=labels, x=top["net_amount"].astype(float).round(2).tolist(), mode="markers",
                             name="net", marker={"symbol": "diamond", "size": 10, "color": "#222"},
                             customdata=top["claims"].astype(int).tolist(),
                             hovertemplate="%{y}: net $%{x:,.2f} over %{customdata} claims<extra></extra>"))
    height = max(300, 28 * len(labels) + 140)
    return _layout(fig, f"Revenue impact by {what}", height=height, barmode="relative",
                   xaxis={"title": "USD (overpaid shown negative)", "tickformat": "$,.0f"},
                   yaxis={"autorange": "reversed", "type": "category"}, margin={"l": 260, "r": 30, "t": 60, "b": 60})


def extrapolation_figure(extrapolation: pd.DataFrame) -> go.Figure | None:
    """Universe estimates (stratum 'all') with their two-sided 90% confidence intervals."""
    frame = extrapolation[extrapolation["stratum"] == "all"] if not extrapolation.empty else extrapolation
    if frame.empty:
        return None
    names = {"net_delta": "Net delta (audited \u2212 original)", "overpayment": "Net overpayment",
             "overpayments_alone": "Overpayments alone"}
    labels = [names.get(m, plot_label(m)) for m in frame["measure"]]
    fig = go.Figure(go.Scatter(
        x=frame["point"].astype(float).tolist(), y=labels, mode="markers",
        marker={"size": 12, "color": NEUTRAL_COLOUR},
        error_x=_error_bars(frame["point"], frame["lower_90"], frame["upper_90"]),
        customdata=np.column_stack([frame["lower_90"].astype(float), frame["upper_90"].astype(float)]).tolist(),
        hovertemplate="%{y}: $%{x:,.0f}<br>90% CI $%{customdata[0]:,.0f} to $%{customdata[1]:,.0f}<extra></extra>"))
    fig.add_vline(x=0, line_color="#888", line_dash="dot")
    return _layout(fig, "Universe estimate with its 90% confidence interval", height=260,
                   xaxis={"title": "USD", "tickformat": "$,.0f"}, yaxis={"type": "category"},
                   margin={"l": 230, "r": 30, "t": 60, "b": 50}, showlegend=False)


# ------------------------------------------------------------------------------------ compliance


def severity_figure(flags: pd.DataFrame) -> go.Figure | None:
    """Upcoding flags per rule, stacked by severity."""
    if flags.empty:
        return None
    counts = flags.groupby(["rule", "severity"]).size().rename("flags").reset_index()
    rules = counts.groupby("rule")["flags"].sum().sort_values(ascending=False).index.tolist()
    fig = go.Figure()
    for severity in ("high", "medium", "low"):
        sub = counts[counts["severity"] == severity].set_index("rule")["flags"].reindex(rules, fill_value=0)
        fig.add_trace(go.Bar(x=[plot_label(r) for r in rules], y=sub.astype(int).tolist(), name=severity,
                             marker_color=SEVERITY_COLOURS[severity],
                             hovertemplate="%{x}: %{y} " + severity + "<extra></extra>"))
    most = int(counts.groupby("rule")["flags"].sum().max())
    return _layout(fig, "Upcoding flags by rule and severity", barmode="stack",
                   xaxis={"title": "rule", "type": "category"},
                   yaxis={"title": "flags", "tickformat": ",d", **({"dtick": 1} if most <= 10 else {})})


def funnel_limits(total_n: int, total_overpaid: int, n, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """A coder's control limits at n audited claims (audits.flags.coder_limits: the hypergeometric
    quantiles behind the coder's Fisher test), for coverage 0.95 or 0.998."""
    from audits.flags import coder_limits

    key = {0.95: "95", 0.998: "998"}[coverage]
    both = coder_limits(total_n, total_overpaid, n)
    return both[f"lower_{key}"], both[f"upper_{key}"]


def funnel_figure(funnel: pd.DataFrame, max_grid: int = 1000) -> go.Figure | None:
    """Share of each coder's audited claims that were overpaid vs their number of audited claims, with
    the 95% and 99.8% limits of the coder test around the audit's overall rate p0."""
    if funnel.empty or funnel["n"].sum() == 0:
        return None
    total_n = int(funnel["audit_claims"].iloc[0]) if "audit_claims" in funnel else int(funnel["n"].sum())
    total_x = int(funnel["audit_overpaid"].iloc[0]) if "audit_overpaid" in funnel else int(funnel["overpaid"].sum())
    p0 = total_x / total_n
    n_max = int(min(max(funnel["n"].max() * 1.1, 12), total_n))
    grid = np.arange(1, n_max + 1) if n_max <= max_grid else np.unique(np.round(np.geomspace(1, n_max, max_grid)))
    fig = go.Figure()
    for coverage, dash, name in ((0.95, "dash", "95% limits"), (0.998, "dot", "99.8% limits")):
        lower, upper = funnel_limits(total_n, total_x, grid, coverage)
        for bound, values in (("upper", upper), ("lower", lower)):
            fig.add_trace(go.Scatter(x=grid.tolist(), y=np.round(values, 6).tolist(), mode="lines",
                                     line={"dash": dash, "color": "#555", "width": 1.2, "shape": "hv"},
                                     name=name, legendgroup=name, showlegend=bound == "upper",
                                     hovertemplate=f"{name} ({bound}) at n=%{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[1, n_max], y=[p0, p0], mode="lines", name=f"all coders {p0:.1%}",
                             line={"color": "#888", "width": 1}, hoverinfo="skip"))
    flagged = funnel["flagged"].fillna(False).astype(bool) if "flagged" in funnel else pd.Series(False, funnel.index)
    for mask, name, colour in ((~flagged, "coder", NEUTRAL_COLOUR), (flagged, "coder flagged", OVERPAID_COLOUR)):
        sub = funnel[mask]
        if sub.empty:
            continue
        q_values = sub["q_value"].astype(float) if "q_value" in sub else np.full(len(sub), np.nan)
        fig.add_trace(go.Scatter(
            x=sub["n"].astype(int).tolist(), y=sub["rate"].astype(float).round(6).tolist(), mode="markers+text",
            text=_labels(sub["coder_id"]), textposition="top center", name=name,
            marker={"size": 10, "color": colour},
            customdata=np.column_stack([sub["overpaid"].astype(int), q_values]).tolist(),
            hovertemplate="coder %{text}: %{customdata[0]} of %{x} overpaid (%{y:.1%}), "
                          "q=%{customdata[1]:.3g}<extra></extra>"))
    return _layout(fig, "Coder funnel: share of audited claims overpaid vs claims audited",
                   xaxis={"title": "audited claims (n)", "rangemode": "tozero"},
                   yaxis={"title": "overpaid share", "tickformat": ".0%", "rangemode": "tozero"})


def _area_order(areas: pd.DataFrame) -> list[str]:
    """Target areas with a facility to show: flagged first, then outliers, then the rest, by name."""
    shown = areas[~areas["suppressed"].fillna(False).astype(bool) & areas["p0"].notna()]
    rank = shown.assign(_flag=shown["flagged"].fillna(False).astype(bool), _out=shown["outlier"].notna())
    order = rank.groupby("target_area")[["_flag", "_out"]].max().reset_index()
    return order.sort_values(["_flag", "_out", "target_area"], ascending=[False, False, True])["target_area"].tolist()


def target_area_funnel_figure(areas: pd.DataFrame, peers: pd.DataFrame | None) -> go.Figure | None:
    """One funnel plot per target area (a menu picks the area): each complete peer's percent against its
    denominator, the peers' pooled rate p0 and Spiegelhalter's overdispersed 95% / 99.8% limits
    (audits.flags.overdispersed_limits, tau2 over the complete peers other than the flagged facilities), and
    the audited facilities highlighted (red when flagged). A facility's own test leaves itself out of its
    peers, so its p0 and tau2 (in the table and its hover) can differ slightly from the funnel's when it is
    also a peer (peers from the claims universe)."""
    from audits.flags import overdispersed_limits, overdispersion

    if peers is None or areas.empty or "p0" not in areas:
        return None
    complete = peers[peers["complete"].fillna(False).astype(bool) & (peers["denominator"] > 0)]
    fig, spans, labels = go.Figure(), [], []
    for area in _area_order(areas):
        mine = areas[(areas["target_area"] == area) & ~areas["suppressed"].fillna(False).astype(bool)]
        theirs = complete[(complete["target_area"] == area)
                          & ~complete["peer_id"].isin(mine.loc[mine["flagged"].fillna(False).astype(bool), "facility_id"])]
        if len(theirs) < 2 or mine.empty:
            continue
        num, den = theirs["numerator"].to_numpy(dtype="float64"), theirs["denominator"].to_numpy(dtype="float64")
        od = overdispersion(num[None, :], den[None, :], np.ones((1, len(den)), dtype=bool))
        p0, tau2 = float(od["p0"][0]), float(od["tau2"][0])
        if np.isnan(tau2):
            continue
        n_max = float(max(den.max(), mine["denominator"].max()) * 1.1)
        grid = np.unique(np.round(np.geomspace(max(1.0, min(den.min(), mine["denominator"].min()) * 0.9), n_max,
                                               200)))
        limits = overdispersed_limits(p0, tau2, grid)
        first = len(fig.data)
        fig.add_trace(go.Scatter(
            x=den.astype(int).tolist(), y=np.round(num / den, 6).tolist(), mode="markers", name="complete peers",
            marker={"size": 6, "color": MUTED_COLOUR}, text=_labels(theirs["peer_id"]),
            hovertemplate="peer %{text}: %{y:.1%} of %{x}<extra></extra>"))
        for name, dash in (("95", "dash"), ("998", "dot")):
            label = "95% limits" if name == "95" else "99.8% limits"
            for bound in ("upper", "lower"):
                fig.add_trace(go.Scatter(
                    x=grid.tolist(), y=np.round(limits[f"{bound}_{name}"], 6).tolist(), mode="lines",
                    line={"dash": dash, "color": "#555", "width": 1.2}, name=label, legendgroup=label,
                    showlegend=bound == "upper",
                    hovertemplate=f"{label} ({bound}) at n=%{{x}}: %{{y:.1%}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[grid[0], grid[-1]], y=[p0, p0], mode="lines", name=f"peers' pooled {p0:.1%}",
                                 line={"color": "#888", "width": 1}, hoverinfo="skip"))
        flagged = mine["flagged"].fillna(False).astype(bool)
        for mask, name, colour in ((~flagged, "audited facility", NEUTRAL_COLOUR),
                                   (flagged, "audited facility flagged", OVERPAID_COLOUR)):
            sub = mine[mask]
            if sub.empty:
                continue
            fig.add_trace(go.Scatter(
                x=sub["denominator"].astype(int).tolist(), y=np.round(sub["percent"].astype(float) / 100, 6).tolist(),
                mode="markers+text", text=_labels(sub["facility_id"]), textposition="top center", name=name,
                marker={"size": 12, "color": colour, "symbol": "diamond", "line": {"width": 1, "color": "#fff"}},
                customdata=np.column_stack([sub["numerator"].astype(int), sub["z_d"].astype(float).round(3),
                                            sub["q_value"].astype(float)]).tolist(),
                hovertemplate="%{text}: %{customdata[0]} of %{x} (%{y:.1%}); z_D %{customdata[1]}, "
                              "q=%{customdata[2]:.3g}<extra></extra>"))
        spans.append((first, len(fig.data)))
        labels.append(area)
    if not spans:
        return None
    total = len(fig.data)
    for i, trace in enumerate(fig.data):
        trace.visible = spans[0][0] <= i < spans[0][1]
    buttons = [{"label": plot_label(area), "method": "update",
                "args": [{"visible": [lo <= i < hi for i in range(total)]},
                         {"title.text": f"Target area {plot_label(area)}: percent against peers (funnel)"}]}
               for area, (lo, hi) in zip(labels, spans)]
    return _layout(fig, f"Target area {plot_label(labels[0])}: percent against peers (funnel)", height=480,
                   updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.15,
                                 "yanchor": "top", "showactive": True}],
                   xaxis={"title": "discharges in the area's denominator (n)", "type": "log"},
                   yaxis={"title": "percent of the denominator", "tickformat": ".0%", "rangemode": "tozero"})


def short_stay_figure(rates: pd.DataFrame) -> go.Figure | None:
    """Highest-severity short-stay rate (and single-MCC rate) per facility; suppressed cells left out."""
    frame = rates[(rates["level"] == "facility") & ~rates["suppressed"].fillna(False).astype(bool)]
    if frame.empty:
        return None
    frame = frame.sort_values("short_stay_rate", ascending=False)
    labels = _labels(frame["entity"])
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=frame["short_stay_rate"].astype(float).round(6).tolist(),
                         name="short stays (LOS < 0.8 \u00d7 GMLOS)", marker_color=OVERPAID_COLOUR,
                         customdata=np.column_stack([frame["short_stays"].astype(int),
                                                     frame["highest_severity_stays"].astype(int)]).tolist(),
                         hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]})<extra></extra>"))
    if frame["single_mcc_rate"].notna().any():
        audited = (frame["audited_stays"] if "audited_stays" in frame else frame["single_mcc_stays"]).fillna(0)
        fig.add_trace(go.Bar(x=labels, y=frame["single_mcc_rate"].astype(float).round(6).tolist(),
                             name="severity on a single MCC (audited stays)", marker_color="#ef6c00",
                             customdata=np.column_stack([frame["single_mcc_stays"].fillna(0).astype(int),
                                                         audited.astype(int)]).tolist(),
                             hovertemplate="%{x}: %{y:.1%} single MCC (%{customdata[0]} of %{customdata[1]} "
                                           "audited highest-severity stays)<extra></extra>"))
    return _layout(fig, "Highest-severity stays: short-stay and single-MCC rates by facility", barmode="group",
                   xaxis={"title": "facility", "type": "category"},
                   yaxis={"title": "share of highest-severity stays", "tickformat": ".0%", "rangemode": "tozero"})
