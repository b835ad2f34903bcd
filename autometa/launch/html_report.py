"""The single-file interactive report of ``autometa show``: ``report.html``.

Every plot of :func:`autometa.launch.plots.figures_of`, drawn with plotly (zoom, hover with
the trial id, legend toggles), plotly.js embedded once, so that the file opens from disk with
no server and no network; above them, the run's outcome, the best config and the top trials.
"""

from __future__ import annotations

import html
from typing import Any

import yaml

from autometa.launch.figures import DIVERGED, EARLY, Figure

MARKERS = {EARLY: dict(symbol="circle-open", color="grey"), DIVERGED: dict(symbol="x",
                                                                            color="red")}


def plotly_figure(fig: Figure) -> Any:
    """One :class:`Figure` as a ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    out = go.Figure()
    palette = qualitative.Plotly
    for trace in fig.traces:
        common = dict(name=trace.name, showlegend=trace.legend, hovertext=trace.text,
                      legendgroup=None if trace.group is None else str(trace.group))
        color = {} if trace.group is None else {"color": palette[trace.group % len(palette)]}
        if trace.style == "bars":
            out.add_trace(go.Bar(x=trace.x, y=trace.y, orientation="h", **common))
        elif trace.style == "lines":
            out.add_trace(go.Scatter(x=trace.x, y=trace.y, mode="lines",
                                     line=dict(width=trace.width, **color), **common))
        else:
            out.add_trace(go.Scatter(x=trace.x, y=trace.y, mode="markers",
                                     marker=dict(size=8, **{**color,
                                                            **MARKERS.get(trace.ended, {})}),
                                     **common))
    title = fig.title + (f"<br><sup>{html.escape(fig.note)}</sup>" if fig.note else "")
    out.update_layout(title=dict(text=title), xaxis_title=fig.xlabel, yaxis_title=fig.ylabel,
                      template="plotly_white", height=440, margin=dict(t=80))
    if fig.xlog:
        out.update_xaxes(type="log")
    if fig.ylog:
        out.update_yaxes(type="log")
    if fig.categories is not None:
        out.update_xaxes(tickvals=list(range(len(fig.categories))), ticktext=fig.categories)
    return out


def write_html(file: str, figures: list[Figure], title: str, lines: list[str],
               best_config: dict[str, Any], table: Any) -> None:
    """``report.html``: ``lines`` (the outcome, checks, where files are), the best config,
    ``table`` (a DataFrame of the top trials) and the ``figures``, in one file."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    plots = [pio.to_html(plotly_figure(fig), include_plotlyjs=False, full_html=False,
                         div_id=f"plot-{fig.name}", config={"responsive": True})
             for fig in figures]
    body = "\n".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    config = html.escape(yaml.safe_dump(best_config, sort_keys=False))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
pre {{ background: #f6f6f6; padding: 0.6em; }}
.plot {{ margin: 1em 0; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{body}
<h2>Best config</h2>
<pre>{config}</pre>
<h2>Top trials</h2>
{table.to_html(index=False, na_rep="", escape=True, border=0)}
<h2>Plots</h2>
{"".join(f'<div class="plot">{p}</div>' for p in plots)}
</body>
</html>
"""
    with open(file, "w", encoding="utf-8") as handle:
        handle.write(page)
