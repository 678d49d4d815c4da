"""Plotly figures, in one publication style. Pure: data in, figure out.

Scenario text never goes into a figure: it comes from the internet, and Plotly interprets some
HTML in labels. Figures carry option names and numbers only.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FONT = dict(family="Helvetica, Arial, sans-serif", size=14)
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
