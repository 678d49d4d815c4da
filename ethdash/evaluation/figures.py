"""Plotly figures, in one publication style. Pure: data in, figure out.

Scenario text never goes into a figure: it comes from the internet, and Plotly interprets some
HTML in labels. Figures carry option names and numbers only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ethdash.evaluation.frames import share_means

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
# The figure font, named so that exports look the same on every machine: Liberation Sans has Arial's metrics
# and is Debian's `fonts-liberation`, which `make browser` installs with the browser that exports.
FONT_FAMILY = "Liberation Sans"
FONT = dict(family=f"{FONT_FAMILY}, Arial, Helvetica, sans-serif", size=14)

# Paper widths in inches. Plotly's static export counts 96 px to the inch (a PDF page of 336 px is 3.5 in),
# so at print size 1 px is 0.75 pt: tick labels and legends at 10 px print at 7.5 pt, titles at 11.5 px at
# 8.6 pt, inside the 7-9 pt that journals ask for.
COLUMN_WIDTHS = {"single": 3.5, "double": 7.0}
PX_PER_INCH = 96
PAPER_TEXT_PX, PAPER_TITLE_PX = 10.0, 11.5
HUMAN_HOVER = (
    "%{x}: %{y:.0%} (%{customdata[0]} votes)<br>90% interval %{customdata[1]:.0%}–%{customdata[2]:.0%}"
    "<extra>%{fullData.name}</extra>"
)
MODEL_HOVER = "%{x}: %{y:.1%}<extra>%{fullData.name}</extra>"


def vote_split_chart(split: pd.DataFrame, title: str = "Human vote split") -> go.Figure:
    """Bars of each option's share per sample (human samples with their posterior interval as error
    bars; model systems, whose rows have no votes, without)."""
    fig = go.Figure()
    for k, (sample, rows) in enumerate(split.groupby("sample", sort=False)):
        fig.add_trace(
            go.Bar(
                name=str(sample),
                x=rows["option"],
                y=rows["share"],
                marker_color=PALETTE[k % len(PALETTE)],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=rows["high"] - rows["share"],
                    arrayminus=rows["share"] - rows["low"],
                    thickness=1.5,
                    width=6,
                ),
                customdata=rows[["votes", "low", "high"]].to_numpy(),
                hovertemplate=HUMAN_HOVER if rows["votes"].notna().all() else MODEL_HOVER,
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        font=FONT,
        template="simple_white",
        height=320,
        margin=dict(l=40, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.2),
        yaxis=dict(title="share of votes", range=[0, 1], tickformat=".0%"),
    )
    return fig


def paper_figure(fig: go.Figure, width_in: float) -> go.Figure:
    """A copy for a paper, `width_in` inches wide at print size: white background, fonts of 7-9 pt, no
    title (the paper's caption says it), the legend above the plot area (never over data or axis titles,
    wrapping long names onto more rows), and margins that grow to fit tick labels and axis titles."""
    out = go.Figure(fig)
    width = round(width_in * PX_PER_INCH)
    rows = (out.layout.meta or {}).get("rows", 1) if isinstance(out.layout.meta, dict) else 1
    panel = width * (0.62 if width_in < 5 else 0.36)  # a plot area about as tall as a reader needs
    out.update_layout(
        template="simple_white",
        font=dict(family=FONT["family"], size=PAPER_TEXT_PX, color="black"),
        title=None,
        width=width,
        height=round(70 + panel * rows),
        # Subplot titles are annotations above their panels, which do not push the margin.
        margin=dict(l=4, r=6, t=PAPER_TITLE_PX + 10 if out.layout.annotations else 4, b=4, autoexpand=True),
        legend=dict(
            orientation="h",
            x=0,
            xanchor="left",
            y=1.02,
            yanchor="bottom",
            font=dict(size=PAPER_TEXT_PX),
            title=None,
            itemsizing="constant",  # a faint 3 px point would be an invisible legend symbol
        ),
    )
    out.update_xaxes(automargin=True, title_font_size=PAPER_TITLE_PX, tickfont_size=PAPER_TEXT_PX, title_standoff=4)
    out.update_yaxes(automargin=True, title_font_size=PAPER_TITLE_PX, tickfont_size=PAPER_TEXT_PX, title_standoff=4)
    out.update_annotations(font_size=PAPER_TITLE_PX)  # subplot titles
    for trace in out.data:  # markers sized for a screen are blots at 3.5 inches
        size = getattr(getattr(trace, "marker", None), "size", None)
        if size is not None and trace.type == "scatter":
            trace.marker.size = np.asarray(size, dtype=float) * 0.6 if not np.isscalar(size) else size * 0.6
    return out


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title=title,
        font=FONT,
        template="simple_white",
        height=height,
        margin=dict(l=50, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.22),
        xaxis=dict(title=x_title),
        yaxis=dict(title=y_title),
    )
    return fig


def reliability_chart(points: pd.DataFrame) -> go.Figure:
    """Mean human share of the predicted option against mean confidence, per confidence bin and system;
    marker area follows the number of items in the bin."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot"), name="perfect calibration")
    )
    for k, (system, rows) in enumerate(points.groupby("system", sort=False)):
        used = rows[rows["items"] > 0]
        size = 6 + 18 * (used["items"] / max(points["items"].max(), 1)) ** 0.5
        fig.add_trace(
            go.Scatter(
                x=used["confidence"],
                y=used["observed"],
                mode="lines+markers",
                name=str(system),
                marker=dict(color=PALETTE[k % len(PALETTE)], size=size),
                line=dict(color=PALETTE[k % len(PALETTE)]),
                customdata=used[["items", "bin_low", "bin_high"]].to_numpy(),
                hovertemplate="confidence %{customdata[1]:.1f}–%{customdata[2]:.1f}: %{customdata[0]} items<br>"
                "mean confidence %{x:.2f}, humans %{y:.2f}<extra>%{fullData.name}</extra>",
            )
        )
    fig = _layout(fig, "Reliability", "model confidence (max probability)", "human share of that option")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


SCATTER_ITEMS = 4000  # items drawn as points per system; more only pile up (the means use every item)


def scatter_sample(n_items: int, max_items: int = SCATTER_ITEMS) -> np.ndarray:
    """Which of n items a scatter draws as points: all of them up to `max_items`, else a fixed pseudo-random
    choice of `max_items` (the same on every rerun), in item order. At corpus scale (27,766 items x 6
    systems) the points alone made the figure's data 2 MB and its drawing about 1 s on every rerun."""
    if n_items <= max_items:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(0).choice(n_items, max_items, replace=False))


def scatter_chart(frame: pd.DataFrame, option: str, max_items: int = SCATTER_ITEMS) -> go.Figure:
    """Human share against model probability of one option, per item and system (hover: the item id;
    customdata carries split and id so that a click can open the item), and, readable where the points pile
    up on the few values a human share takes, each system's mean model probability per human share with its
    95% interval over every item (diamonds, nudged apart vertically so that systems do not hide each other).
    Points: at most `max_items` items per system (`scatter_sample`)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot"), name="y = x"))
    means = share_means(frame)
    groups = list(frame.groupby("system", sort=False))
    for k, (system, every) in enumerate(groups):
        rows = every.iloc[scatter_sample(len(every), max_items)]
        colour = PALETTE[k % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=rows["model"],
                y=rows["human"],
                mode="markers",
                name=str(system),
                legendgroup=str(system),
                marker=dict(color=colour, size=5, opacity=0.35),
                customdata=rows[["split", "item_id"]].to_numpy(),
                hovertemplate="%{customdata[1]} (%{customdata[0]})<br>model %{x:.2f}, humans %{y:.2f}"
                "<extra>%{fullData.name}</extra>",
            )
        )
        mine = means[means["system"] == system]
        nudge = (k - (len(groups) - 1) / 2) * 0.025
        fig.add_trace(
            go.Scatter(
                x=mine["mean"],
                y=mine["human"] + nudge,
                mode="markers",
                name=f"{system} (mean)",
                legendgroup=str(system),
                showlegend=False,
                marker=dict(color=colour, size=10, symbol="diamond", line=dict(color="black", width=1)),
                error_x=dict(
                    type="data",
                    symmetric=False,
                    array=(mine["high"] - mine["mean"]).fillna(0),
                    arrayminus=(mine["mean"] - mine["low"]).fillna(0),
                    thickness=1.5,
                    width=3,
                    color=colour,
                ),
                customdata=mine[["items", "human"]].to_numpy(),
                hovertemplate="humans %{customdata[1]:.2f}: mean model %{x:.2f} over %{customdata[0]} items"
                "<extra>%{fullData.name}</extra>",
            )
        )
    fig = _layout(fig, f"P({option}): humans against models", f"model P({option})", f"human share {option}", 420)
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=[-0.06, 1.06])
    return fig


def difference_histogram(frame: pd.DataFrame, x_title: str) -> go.Figure:
    """Distribution of per-item differences, one overlaid histogram per column of frame."""
    fig = go.Figure()
    for k, column in enumerate(frame.columns):
        fig.add_trace(
            go.Histogram(x=frame[column], name=str(column), opacity=0.6, marker_color=PALETTE[k % len(PALETTE)])
        )
    fig.update_layout(barmode="overlay")
    return _layout(fig, "Per-item differences", x_title, "items")


def curves_chart(records: pd.DataFrame, title: str) -> go.Figure:
    """Training curves, each quantity in its own panel on its own axis (columns step, value, series, unit):
    a loss and an accuracy share no scale. The panels share the steps axis; a unit of "%" reads values as
    fractions."""
    groups = list(records.groupby("series", sort=False))
    columns = 1 if len(groups) == 1 else 2
    rows = math.ceil(len(groups) / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[str(series) for series, _ in groups],
        specs=[[{} if r * columns + c < len(groups) else None for c in range(columns)] for r in range(rows)],
        horizontal_spacing=0.16,  # room for the right panel's tick labels at a paper's 3.5 inches
        vertical_spacing=0.25 / rows,
    )
    for k, (series, points) in enumerate(groups):
        row, column = divmod(k, columns)
        unit = str(points["unit"].iloc[0]) if "unit" in points else ""
        percent = unit == "%"
        fig.add_trace(
            go.Scatter(
                x=points["step"],
                y=points["value"],
                mode="lines+markers" if len(points) < 30 else "lines",
                name=str(series),
                line=dict(color=PALETTE[k % len(PALETTE)]),
                hovertemplate=f"step %{{x}}: %{{y:{'.1%' if percent else '.4g'}}}"
                f"{'' if percent else ' ' + unit}<extra>{series}</extra>",
            ),
            row=row + 1,
            col=column + 1,
        )
        # A share reads from its tick labels (0%-100%) and needs no axis title, which would crowd the left panel.
        fig.update_yaxes(
            title_text=None if percent else unit,
            tickformat=".0%" if percent else None,
            range=[0, 1] if percent else None,
            row=row + 1,
            col=column + 1,
        )
        lowest = k + columns >= len(groups)  # the lowest panel of its column
        fig.update_xaxes(title_text="step" if lowest else None, row=row + 1, col=column + 1)
    fig.update_xaxes(matches="x")  # the same steps under every panel
    fig.update_layout(
        title=title,
        font=FONT,
        template="simple_white",
        height=90 + 250 * rows,
        margin=dict(l=60, r=10, t=70, b=40),
        showlegend=False,
        meta={"rows": rows},  # paper_figure sizes the height by the panel rows
    )
    return fig
