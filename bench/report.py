"""The benchmark's table as text and Markdown, and a hand-written SVG of rows/s by file size."""

from __future__ import annotations

import math
from html import escape

from bench.measure import MIB
from bench.suite import Results, Row

HEADER = (
    "case",
    "rows",
    "wall s",
    "rows/s",
    "peak RSS MiB",
    "floor s",
    "x floor",
    "x floor min-max",
    "note",
)


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.case,
        f"{row.rows:,}" if row.rows else "",
        f"{row.wall:.3f}" if row.wall is not None else "",
        f"{row.rate:,.0f}" if row.rate else "",
        f"{row.peak_rss / MIB:,.0f}" if row.peak_rss else "",
        f"{row.floor:.2f}" if row.floor else "",
        f"{row.ratio:.2f}" if row.ratio else "",
        f"{row.spread[0]:.2f}-{row.spread[1]:.2f}" if row.spread else "",
        row.note,
    )


def text_table(res: Results) -> str:
    rows = [HEADER, *(_cells(r) for r in res.rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    right = {1, 2, 3, 4, 5, 6, 7}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    out.append("")
    out += [f"{'MET ' if t.met else 'MISSED'} {t.name}: {t.value}" for t in res.targets]
    if res.load:
        out.append(f"load: {res.load}")
    return "\n".join(out)


def markdown_table(res: Results) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in res.rows]
    return "\n".join(out)


def targets_markdown(res: Results) -> str:
    return "\n".join(
        f"- {'met' if t.met else '**missed**'}: {t.name} ({t.value})" for t in res.targets
    )


SERIES = (
    ("product", "invoice-worker run --once", "#1f6feb"),
    ("floor", "floor: polars rules + fastest SQLite load", "#2da44e"),
    ("plain", "plain stack: csv loop + sqlite-utils", "#cf222e"),
)


def svg_plot(res: Results, width: int = 640, height: int = 360) -> str:
    """Rows/s against file size, log-log, one line per series."""
    left, right, top, bottom = 70, 20, 20, 80
    points = {
        key: sorted((rows, v[key]) for rows, v in res.curve.items() if key in v)
        for key, _, _ in SERIES
    }
    xs = [r for r in res.curve]
    ys = [y for pts in points.values() for _, y in pts]
    if not xs or not ys:
        return ""
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float) -> float:
        return left + (math.log10(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (math.log10(y) - y0) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for e in range(y0, y1 + 1):
        y = py(10**e)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10**e:,}</text>')
    for x in sorted(xs):
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:,}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - bottom + 34}" '
        'text-anchor="middle">rows in the file (log)</text>'
    )
    parts.append(
        f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2})">rows/s (log)</text>'
    )
    for n, (key, label, color) in enumerate(SERIES):
        pts = points[key]
        if not pts:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>' for x, y in pts
        ]
        ly = height - 24 + (n % 2) * 14 - 8
        lx = left + (n // 2) * 300
        parts.append(
            f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{ly + 1}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
