"""Small server-rendered SVG charts for the leaderboard: interval plot, heatmap, line chart.

Plain strings (rects, lines, text), escaped here; no JavaScript and no plotting library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
FONT = 'font-family="sans-serif" font-size="11"'


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / count
    return [lo + k * step for k in range(count + 1)]


def interval_plot(rows: Sequence[tuple[str, float, float, float]], *, title: str) -> str:
    """One line per model from lower to upper with a dot at the rating (rows: label, rating,
    lower, upper), best first."""
    if not rows:
        return ""
    label_w, plot_w, row_h, top = 170.0, 380.0, 18.0, 24.0
    lo = min(r[2] for r in rows)
    hi = max(r[3] for r in rows)
    pad = max((hi - lo) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad

    def x(value: float) -> float:
        return label_w + (value - lo) / (hi - lo) * plot_w

    height = top + row_h * len(rows) + 10
    body = []
    for tick in _ticks(lo, hi):
        body.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 8}" '
            'stroke="#ddd"/>'
            f'<text x="{x(tick):.1f}" y="{top - 8}" text-anchor="middle" {FONT}>{tick:.0f}</text>'
        )
    for k, (label, rating, lower, upper) in enumerate(rows):
        y = top + row_h * k + row_h / 2
        body.append(
            f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(label)}</text>"
            f'<line x1="{x(lower):.1f}" y1="{y:.1f}" x2="{x(upper):.1f}" y2="{y:.1f}" '
            'stroke="#1f77b4" stroke-width="2"/>'
            f'<circle cx="{x(rating):.1f}" cy="{y:.1f}" r="3.5" fill="#d62728">'
            f"<title>{escape(label)}: {rating:.1f} ({lower:.1f} to {upper:.1f})</title></circle>"
        )
    return _svg(label_w + plot_w + 20, height, body, title)


def _cell_colour(value: float, lo: float, hi: float, *, rate: bool) -> str:
    """White to blue for counts; red-white-blue around the middle for win rates."""
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    t = min(max(t, 0.0), 1.0)
    if rate:  # red below one half, blue above
        if t < 0.5:
            s = (0.5 - t) * 2
            return f"rgb(255,{int(255 - 130 * s)},{int(255 - 130 * s)})"
        s = (t - 0.5) * 2
        return f"rgb({int(255 - 150 * s)},{int(255 - 90 * s)},255)"
    return f"rgb({int(255 - 200 * t)},{int(255 - 120 * t)},255)"


def heatmap(
    labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    *,
    title: str,
    rate: bool,
) -> str:
    """Rows against columns; ``rate`` shows shares (0..1) as percentages, else counts."""
    if not labels:
        return ""
    cell, left, top = 34.0, 150.0, 110.0
    values = [v for row in matrix for v in row if v is not None]
    lo, hi = (0.0, 1.0) if rate else (0.0, max(values, default=1.0) or 1.0)
    n = len(labels)
    body = []
    for k, label in enumerate(labels):
        cx = left + cell * k + cell / 2
        body.append(
            f'<text x="{left - 6}" y="{top + cell * k + cell / 2 + 4:.1f}" text-anchor="end" '
            f"{FONT}>{escape(label)}</text>"
            f'<text transform="translate({cx:.1f},{top - 6}) rotate(-50)" {FONT}>'
            f"{escape(label)}</text>"
        )
    for r, row in enumerate(matrix):
        for c, value in enumerate(row):
            x0, y0 = left + cell * c, top + cell * r
            if value is None:
                body.append(
                    f'<rect x="{x0:.0f}" y="{y0:.0f}" width="{cell:.0f}" height="{cell:.0f}" '
                    'fill="#f4f4f4" stroke="#fff"/>'
                )
                continue
            text = f"{value * 100:.0f}" if rate else f"{value:.0f}"
            tip = f"{labels[r]} vs {labels[c]}: " + (f"{value:.1%}" if rate else text)
            body.append(
                f'<rect x="{x0:.0f}" y="{y0:.0f}" width="{cell:.0f}" height="{cell:.0f}" '
                f'fill="{_cell_colour(value, lo, hi, rate=rate)}" stroke="#fff"><title>{escape(tip)}</title>'
                f'</rect><text x="{x0 + cell / 2:.1f}" y="{y0 + cell / 2 + 4:.1f}" '
                f'text-anchor="middle" {FONT}>{text}</text>'
            )
    # Rotated column labels lean right: leave room for them past the last column.
    return _svg(left + cell * n + 90, top + cell * n + 10, body, title)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, x_label: str
) -> str:
    """One polyline per series over a shared x axis (e.g. battles so far) with a legend; a series
    of one point (after the first counted vote) is a dot."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    left, top, plot_w, plot_h, legend_w = 50.0, 15.0, 420.0, 220.0, 170.0
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    if x_lo == x_hi:  # one x (the first counted vote): the points stand mid-axis
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    pad = max((y_hi - y_lo) * 0.05, 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def xy(p: tuple[float, float]) -> tuple[float, float]:
        return (
            left + (p[0] - x_lo) / (x_hi - x_lo) * plot_w,
            top + plot_h - (p[1] - y_lo) / (y_hi - y_lo) * plot_h,
        )

    body = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>'
    ]
    for tick in _ticks(y_lo, y_hi, 4):
        y = top + plot_h - (tick - y_lo) / (y_hi - y_lo) * plot_h
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{tick:.0f}</text>'
        )
    body.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 28}" text-anchor="middle" {FONT}>'
        f"{escape(x_label)}</text>"
        f'<text x="{left}" y="{top + plot_h + 14}" {FONT}>{x_lo:.0f}</text>'
        f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" {FONT}>'
        f"{x_hi:.0f}</text>"
    )
    for k, (label, values) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        tip = f"<title>{escape(label)}</title>"
        if len(values) == 1:  # a polyline of one point draws nothing: a dot instead
            x, y = xy(values[0])
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">{tip}</circle>'
        else:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, values))
            mark = (
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                f"{tip}</polyline>"
            )
        body.append(
            mark + f'<rect x="{left + plot_w + 12}" y="{top + 14 * k}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + plot_w + 26}" y="{top + 14 * k + 9}" {FONT}>'
            f"{escape(label)}</text>"
        )
    return _svg(left + plot_w + legend_w, top + plot_h + 36, body, title)
