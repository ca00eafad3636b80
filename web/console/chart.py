"""A server-drawn SVG chart of each run's lag and duration (no JavaScript, no library).

Two series over the runs, oldest on the left: lag (start minus when it was due) and duration
(finish minus start), on one axis in seconds. Every point has a <title> so a screen reader or
a hover reads the exact numbers; the run table beside it is the text alternative.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from web.console import display

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 16, 28
SERIES = (("lag", "#1f5fa8", "lag"), ("duration", "#b4540a", "duration"))


@dataclass(frozen=True)
class Point:
    label: str  # shown in the point's title, e.g. the scheduled time
    lag: float | None  # seconds
    duration: float | None  # seconds


def svg(points: list[Point]) -> Markup:
    """The chart as inline SVG markup; a short text when there is nothing to draw."""
    values = [v for p in points for v in (p.lag, p.duration) if v is not None]
    if not values:
        return Markup('<p class="muted">No finished runs to chart yet.</p>')
    top = max(max(values), 0.001)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(points) - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        x = LEFT + (index * step if len(points) > 1 else plot_w / 2)
        return round(x, 1), round(TOP + plot_h - (max(value, 0) / top) * plot_h, 1)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Lag and duration per run, oldest first</title>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#888"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{escape(display.span(top))}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for offset, (attr, colour, name) in enumerate(SERIES):
        coords = [(i, getattr(p, attr)) for i, p in enumerate(points)]
        drawn = [(i, xy(i, v)) for i, v in coords if v is not None]
        if len(drawn) > 1:
            line = " ".join(f"{x},{y}" for _, (x, y) in drawn)
            dash = ' stroke-dasharray="6 3"' if offset else ""
            parts.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
        for i, (x, y) in drawn:
            value = getattr(points[i], attr)
            title = escape(f"{points[i].label}: {name} {display.span(value)}")
            if offset:  # squares for the second series: told apart without colour
                shape = f'<rect x="{x - 3}" y="{y - 3}" width="6" height="6" fill="{colour}">'
                parts.append(f"{shape}<title>{title}</title></rect>")
            else:
                shape = f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}">'
                parts.append(f"{shape}<title>{title}</title></circle>")
        legend_x = LEFT + 10 + offset * 110
        parts.append(
            f'<text x="{legend_x + 14}" y="{HEIGHT - 8}">{name}</text>'
            f'<line x1="{legend_x}" y1="{HEIGHT - 12}" x2="{legend_x + 10}" y2="{HEIGHT - 12}" '
            f'stroke="{colour}" stroke-width="3"/>'
        )
    parts.append("</svg>")
    # Safe: every piece is our own markup with numbers, and the labels went through escape().
    return Markup("".join(parts))  # noqa: S704
