"""Draw each dashboard query's result (the last minute from a real Prometheus) as small SVG line
charts on one HTML page and screenshot it with headless Chromium: the picture of the dashboard's
data in docs/operating.md, since Grafana itself is not packaged in Debian."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from html import escape
from pathlib import Path

from tests.support import http_get

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT = 380, 120


def _range(url: str, expr: str, seconds: int = 60) -> list[dict]:
    end = time.time()
    query = urllib.parse.urlencode({"query": expr, "start": end - seconds, "end": end, "step": 1})
    _, body = http_get(f"{url}/api/v1/query_range?{query}", timeout=10)
    return json.loads(body)["data"]["result"]


def _chart(title: str, series: list[dict]) -> str:
    points = [[(float(t), float(v)) for t, v in s["values"] if math.isfinite(float(v))] for s in series]
    values = [v for line in points for _, v in line] or [0.0]
    times = [t for line in points for t, _ in line] or [0.0, 1.0]
    low, high = min(values), max(values)
    high = high if high > low else low + 1
    t0, t1 = min(times), max(times) if max(times) > min(times) else min(times) + 1
    lines = []
    for i, line in enumerate(points):
        xy = " ".join(f"{4 + (t - t0) / (t1 - t0) * (WIDTH - 8):.1f},"
                      f"{HEIGHT - 4 - (v - low) / (high - low) * (HEIGHT - 8):.1f}" for t, v in line)
        lines.append(f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.5" points="{xy}"/>')
    legend = ", ".join(escape(",".join(f"{k}={v}" for k, v in s["metric"].items()
                                       if k not in ("job", "instance", "__name__"))) or "(one series)"
                       for s in series[:4]) + (f" and {len(series) - 4} more" if len(series) > 4 else "")
    return (f'<div class="p"><b>{escape(title)}</b> <small>{len(series)} series, {low:.3g} to {high:.3g}</small>'
            f'<svg width="{WIDTH}" height="{HEIGHT}">{"".join(lines)}</svg><small>{legend}</small></div>')


def render_queries(url: str, queries: list[tuple[str, str]], png: Path, work: Path) -> None:
    """One chart per panel (its queries' series together), in the dashboard's order."""
    from tests.preview.test_browser import chromium, screenshot  # noqa: PLC0415

    panels: dict[str, list[dict]] = {}
    for title, expr in queries:
        panels.setdefault(title, []).extend(_range(url, expr))
    charts = "".join(_chart(title, series) for title, series in panels.items())
    page = work / "dashboard.html"
    page.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><style>
body{{font-family:sans-serif;font-size:12px;margin:8px}} .p{{display:inline-block;width:{WIDTH}px;margin:6px;
vertical-align:top}} svg{{display:block;border:1px solid #ccc;background:#fcfcfc}}</style></head><body>
<h3>streamd dashboard queries, last minute, from a real Prometheus scraping the daemon</h3>{charts}</body></html>""")
    png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(chromium(), page.as_uri(), png, work / "profile-dashboard", "820,1180")
