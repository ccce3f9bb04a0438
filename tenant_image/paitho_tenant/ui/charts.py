"""Charts rendered on the server as SVG markup (no script, no inline style: colours come from
classes in app.css). Each chart has a title and a description for screen readers, and its
figures are also given as a table next to it by the page."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH = 320
HEIGHT = 120
PAD = 18


@dataclass(frozen=True)
class Bar:
    label: str
    value: float


def bar_chart(chart_id: str, title: str, bars: list[Bar], unit: str = "") -> str:
    """An accessible bar chart as an <svg> string; values are escaped, sizes computed here."""
    top = max((b.value for b in bars), default=0.0) or 1.0
    n = max(len(bars), 1)
    slot = (WIDTH - 2 * PAD) / n
    width = max(slot * 0.7, 1.0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">'
        + escape("; ".join(f"{b.label}: {_fmt(b.value)}{unit}" for b in bars) or "no data")
        + "</desc>",
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}"'
        f' y2="{HEIGHT - PAD}"/>',
    ]
    for i, bar in enumerate(bars):
        h = (HEIGHT - 2 * PAD) * (bar.value / top)
        x = PAD + i * slot + (slot - width) / 2
        y = HEIGHT - PAD - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}">'
            f"<title>{escape(bar.label)}: {escape(_fmt(bar.value))}{escape(unit)}</title></rect>"
        )
    if bars:
        parts.append(
            f'<text class="tick" x="{PAD}" y="{HEIGHT - 4}">{escape(bars[0].label)}</text>'
            f'<text class="tick" x="{WIDTH - PAD}" y="{HEIGHT - 4}" text-anchor="end">'
            f"{escape(bars[-1].label)}</text>"
        )
    parts.append(
        f'<text class="tick" x="{PAD}" y="{PAD - 6}">max {escape(_fmt(top))}{escape(unit)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"
