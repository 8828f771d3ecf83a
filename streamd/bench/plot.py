"""The PNG of ``streamd bench --streams``: streams (x) against per-stream fps published (min and median,
top panel) and frame age at publish (p50 and p99, bottom panel), with the real-time limits drawn.

Drawn with OpenCV (already a dependency) so the bench needs no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

WIDTH, HEIGHT = 1200, 900
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK, _GREY, _LIGHT = (0, 0, 0), (120, 120, 120), (225, 225, 225)
_BLUE, _ORANGE, _RED, _GREEN = (180, 119, 31), (14, 127, 255), (40, 39, 214), (44, 160, 44)
_LEFT, _RIGHT, _TOP, _GAP, _BOTTOM = 110, 40, 90, 90, 80


def nice_ticks(high: float, count: int = 6, integers: bool = False) -> list[float]:
    """0 .. >= high in about ``count`` round steps (1, 2, 2.5, 5 x 10^k; whole numbers if ``integers``)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integers:
        step = max(1, round(step if step != 2.5 * magnitude else 2 * magnitude))
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}"


class _Panel:
    def __init__(self, image: np.ndarray, top: int, bottom: int, x_ticks: list[float], y_ticks: list[float]) -> None:
        self.image, self.top, self.bottom = image, top, bottom
        self.left, self.right = _LEFT, WIDTH - _RIGHT
        self.x_ticks, self.y_ticks = x_ticks, y_ticks

    def point(self, x: float, y: float) -> tuple[int, int]:
        px = self.left + (x - self.x_ticks[0]) / (self.x_ticks[-1] - self.x_ticks[0]) * (self.right - self.left)
        py = self.bottom - y / self.y_ticks[-1] * (self.bottom - self.top)
        return int(round(px)), int(round(min(max(py, self.top - 8), self.bottom)))

    def axes(self, x_label: str, y_label: str) -> None:
        image = self.image
        for tick in self.y_ticks:
            _, y = self.point(self.x_ticks[0], tick)
            cv2.line(image, (self.left, y), (self.right, y), _LIGHT, 1)
            text = _label(tick)
            (width, height), _ = cv2.getTextSize(text, _FONT, 0.5, 1)
            cv2.putText(image, text, (self.left - width - 8, y + height // 2), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
        for tick in self.x_ticks:
            x, _ = self.point(tick, 0)
            cv2.line(image, (x, self.bottom), (x, self.bottom + 5), _BLACK, 1)
            text = _label(tick)
            (width, height), _ = cv2.getTextSize(text, _FONT, 0.5, 1)
            cv2.putText(image, text, (x - width // 2, self.bottom + height + 10), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
        cv2.rectangle(image, (self.left, self.top), (self.right, self.bottom), _BLACK, 1)
        (width, _), _ = cv2.getTextSize(x_label, _FONT, 0.6, 1)
        cv2.putText(image, x_label, ((self.left + self.right - width) // 2, self.bottom + 45), _FONT, 0.6, _BLACK, 1,
                    cv2.LINE_AA)
        # The y label, written horizontally on its own strip and turned a quarter to read bottom to top.
        (width, height), _ = cv2.getTextSize(y_label, _FONT, 0.6, 1)
        strip = np.full((height + 10, width + 4, 3), 255, np.uint8)
        cv2.putText(strip, y_label, (2, height + 3), _FONT, 0.6, _BLACK, 1, cv2.LINE_AA)
        strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        middle = (self.top + self.bottom) // 2
        y0 = max(0, middle - strip.shape[0] // 2)
        strip = strip[: self.image.shape[0] - y0]
        self.image[y0:y0 + strip.shape[0], 20:20 + strip.shape[1]] = strip

    def series(self, xs: Sequence[float], ys: Sequence[float | None], colour: tuple[int, int, int],
               marker: str) -> None:
        """Circles on a thick line, or small squares on a thin one (drawn second, so both show where equal)."""
        points = [self.point(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        for start, end in zip(points, points[1:]):
            cv2.line(self.image, start, end, colour, 2 if marker == "square" else 4, cv2.LINE_AA)
        for x, y in points:
            if marker == "square":
                cv2.rectangle(self.image, (x - 4, y - 4), (x + 4, y + 4), colour, -1)
            else:
                cv2.circle(self.image, (x, y), 7, colour, -1, cv2.LINE_AA)

    def limit(self, value: float, colour: tuple[int, int, int], text: str) -> None:
        _, y = self.point(self.x_ticks[0], value)
        for x in range(self.left, self.right, 16):
            cv2.line(self.image, (x, y), (min(x + 8, self.right), y), colour, 1)
        cv2.putText(self.image, text, (self.right - 8 - cv2.getTextSize(text, _FONT, 0.5, 1)[0][0], y - 9), _FONT,
                    0.5, colour, 1, cv2.LINE_AA)

    def vertical(self, x_value: float, colour: tuple[int, int, int], text: str) -> None:
        x, _ = self.point(x_value, 0)
        for y in range(self.top, self.bottom, 16):
            cv2.line(self.image, (x, y), (x, min(y + 8, self.bottom)), colour, 1)
        cv2.putText(self.image, text, (x + 6, self.bottom - 10), _FONT, 0.5, colour, 1, cv2.LINE_AA)

    def legend(self, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
        x = self.left + 14
        for text, colour in entries:
            cv2.rectangle(self.image, (x, self.top + 12), (x + 16, self.top + 24), colour, -1)
            cv2.putText(self.image, text, (x + 22, self.top + 24), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
            x += 40 + cv2.getTextSize(text, _FONT, 0.5, 1)[0][0]


def draw_streams_plot(runs: Sequence[dict], title: str, subtitle: str, min_fps: float, max_age_p99_seconds: float,
                      path: str, largest: int | None = None) -> None:
    """Write the PNG (WIDTH x HEIGHT). ``runs``: the bench's run records (keys ``streams``,
    ``published_fps``, ``frame_age_seconds``); ``min_fps``, ``max_age_p99_seconds``: the real-time limits;
    ``largest``: a sweep's answer, marked on both panels."""
    runs = sorted(runs, key=lambda run: run["streams"])
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    cv2.putText(image, title, (_LEFT, 36), _FONT, 0.75, _BLACK, 2, cv2.LINE_AA)
    cv2.putText(image, subtitle, (_LEFT, 64), _FONT, 0.5, _GREY, 1, cv2.LINE_AA)
    streams = [run["streams"] for run in runs]
    x_ticks = nice_ticks(max(streams + [1]), 8, integers=True)
    panel_height = (HEIGHT - _TOP - _GAP - _BOTTOM) // 2
    fps_min = [run["published_fps"]["min"] for run in runs]
    fps_median = [run["published_fps"]["median"] for run in runs]
    fps_top = max([min_fps / 0.983 * 1.1, *[v for v in fps_median if math.isfinite(v)]])
    fps = _Panel(image, _TOP, _TOP + panel_height, x_ticks, nice_ticks(fps_top))
    fps.axes("streams", "fps published per stream")
    fps.limit(min_fps, _RED, f"real time: every stream >= {min_fps:g} fps")
    fps.series(streams, fps_median, _BLUE, "circle")
    fps.series(streams, fps_min, _ORANGE, "square")
    fps.legend([("median stream", _BLUE), ("slowest stream", _ORANGE)])
    age_p50, age_p99 = ([None if run["frame_age_seconds"][q] is None else run["frame_age_seconds"][q] * 1000
                         for run in runs] for q in ("p50", "p99"))
    finite = [v for v in age_p99 if v is not None and math.isfinite(v)]
    age_top = max([max_age_p99_seconds * 1000 * 1.2, *finite])
    ages = _Panel(image, _TOP + panel_height + _GAP, _TOP + 2 * panel_height + _GAP, x_ticks, nice_ticks(age_top))
    ages.axes("streams", "frame age at publish (ms)")
    ages.limit(max_age_p99_seconds * 1000, _RED, f"p99 limit {max_age_p99_seconds * 1000:g} ms")
    ages.series(streams, age_p50, _GREEN, "circle")
    ages.series(streams, age_p99, _RED, "square")
    ages.legend([("p50", _GREEN), ("p99", _RED)])
    if largest:
        for panel in (fps, ages):
            panel.vertical(largest, _GREEN, f"largest at real time: {largest}")
    if not cv2.imwrite(path, image):
        raise OSError(f"cannot write the plot to {path}")
