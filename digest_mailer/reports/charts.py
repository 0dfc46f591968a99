"""The report's charts as SVG text, drawn with matplotlib's SVG backend.

Pure: plain lists in, SVG text out; no store. matplotlib is loaded with this module,
which only the HTML report imports (`--help` and the text reports never load it).

The output is deterministic: text is kept as text (``svg.fonttype = 'none'``, readable
and searchable), ids come from a fixed salt, and no date or tool name is written. Each
SVG carries a ``<title>`` and a ``<desc>`` that screen readers announce (``role="img"``)
and ids prefixed with the chart's key, so several charts fit in one page.
"""

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

# what a chart never uses: TeX, math parsing of labels ("$5" stays "$5"), dates, tools
RC = {
    "svg.fonttype": "none",
    "text.usetex": False,
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.6,
}
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# distinct in colour (Okabe-Ito, safe for colour-blind readers), line style and marker
STYLES = (
    ("#0072B2", "-", "o"),
    ("#D55E00", "--", "s"),
    ("#009E73", "-.", "^"),
    ("#CC79A7", ":", "D"),
    ("#E69F00", (0, (5, 1, 1, 1)), "v"),
    ("#56B4E9", (0, (3, 1)), "P"),
)
HATCHES = ("", "//", "..", "xx", "\\\\", "++")
MAX_TICKS = 14  # labels on the x axis; others are left out so they stay readable


@dataclass(frozen=True)
class Chart:
    key: str  # a short name, unique in the page: prefixes every id of the SVG
    title: str
    desc: str
    svg: str


def _svg(figure: Figure, key: str, title: str, desc: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML
    # every id and reference prefixed with the key: two charts never share an id
    text = re.sub(r'\bid="', f'id="{key}-', text)
    text = re.sub(r'href="#', f'href="#{key}-', text)
    text = text.replace("url(#", f"url(#{key}-")
    text = text.replace("*{stroke-linejoin", f"#{key} *{{stroke-linejoin")
    head = f'<svg id="{key}" role="img" aria-labelledby="{key}-title {key}-desc" class="chart" '
    text = text.replace("<svg ", head, 1)
    opened = text.index(">") + 1
    described = (
        f'\n <title id="{key}-title">{escape(title)}</title>'
        f'\n <desc id="{key}-desc">{escape(desc)}</desc>'
    )
    return text[:opened] + described + text[opened:]


def _figure(width: float = 8.0, height: float = 3.6) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasSVG(figure)  # the SVG backend, explicitly: no GUI, no global state
    return figure


def _sparse_ticks(labels: Sequence[str]) -> list[int]:
    step = max(1, -(-len(labels) // MAX_TICKS))
    return list(range(0, len(labels), step))


def _finish(
    figure: Figure, axes: Any, labels: Sequence[str], ylabel: str, key: str, title: str, desc: str
) -> Chart:
    """What both charts end with: sparse x labels, a y axis from 0 in whole numbers, the
    legend beside the plot; then the SVG."""
    ticks = _sparse_ticks(labels)
    axes.set_xticks(ticks, [labels[i] for i in ticks], rotation=45, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return Chart(key, title, desc, _svg(figure, key, title, desc))


def line_chart(
    key: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: dict[str, Sequence[int]],
    *,
    ylabel: str = "",
) -> Chart:
    """One line per series over ``labels`` (e.g. weeks), each its own colour, dash and
    marker."""
    with matplotlib.rc_context({**RC, "svg.hashsalt": f"digest-mailer-{key}"}):
        figure = _figure()
        axes = figure.subplots()
        x = list(range(len(labels)))
        for n, (name, values) in enumerate(series.items()):
            colour, dash, marker = STYLES[n % len(STYLES)]
            axes.plot(
                x,
                list(values),
                label=name,
                color=colour,
                linestyle=dash,
                marker=marker,
                markersize=4,
                linewidth=1.8,
            )
        return _finish(figure, axes, labels, ylabel, key, title, desc)


def bar_chart(
    key: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: dict[str, Sequence[int]],
    *,
    ylabel: str = "",
) -> Chart:
    """Bars grouped by label (e.g. issues), one bar per series, each with its own colour
    and hatching."""
    with matplotlib.rc_context({**RC, "svg.hashsalt": f"digest-mailer-{key}"}):
        figure = _figure()
        axes = figure.subplots()
        count = max(len(series), 1)
        width = 0.8 / count
        for n, (name, values) in enumerate(series.items()):
            colour = STYLES[n % len(STYLES)][0]
            offsets = [i - 0.4 + width * (n + 0.5) for i in range(len(labels))]
            axes.bar(
                offsets,
                list(values),
                width,
                label=name,
                color=colour,
                hatch=HATCHES[n % len(HATCHES)],
                edgecolor="#202020",
                linewidth=0.5,
            )
        axes.grid(axis="x", visible=False)
        return _finish(figure, axes, labels, ylabel, key, title, desc)
