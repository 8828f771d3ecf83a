"""Zone and line geometry: what a config may describe, and the arrays one frame's test runs on.

Pure numpy and arithmetic, no other streamd module: the config validation (streamd.config.load) uses
the checks here, and the analytics compile a source's zones and lines into one matrix product.

Every zone and line looks at one point of each box, its *anchor*. An anchor is linear in the box's
corners, so for all objects at once one product ``boxes @ W - bias`` gives, per zone edge, the anchor
relative to the edge's start (the point-in-polygon test's inputs) and, per line, the anchor's signed
distance from the line and its position along it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# anchor name -> (weights of x1, y1, x2, y2 for the anchor's x, the same for its y)
ANCHORS: dict[str, tuple[tuple[float, float, float, float], tuple[float, float, float, float]]] = {
    "bottom_centre": ((0.5, 0.0, 0.5, 0.0), (0.0, 0.0, 0.0, 1.0)),
    "centre": ((0.5, 0.0, 0.5, 0.0), (0.0, 0.5, 0.0, 0.5)),
    "top_left": ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0)),
    "top_right": ((0.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 0.0)),
    "bottom_left": ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
    "bottom_right": ((0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
}
# The most zones and lines one source may have: a box's code holds a bit per zone and two per line in
# 62 bits of an int64 (streamd.analytics.tracks).
MAX_ZONES = 30
MAX_LINES = 16


def anchor_points(boxes_xyxy: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 2) anchor points of (N, 4) boxes."""
    wx, wy = ANCHORS[anchor]
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return np.stack([boxes @ np.array(wx), boxes @ np.array(wy)], axis=1)


# -- what a config may describe --------------------------------------------------------------------
def _orientation(a: Sequence[float], b: Sequence[float], c: Sequence[float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Sequence[float], b: Sequence[float], p: Sequence[float]) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_meet(a: Sequence[float], b: Sequence[float], c: Sequence[float], d: Sequence[float]) -> bool:
    """Whether segments ab and cd share a point (crossing, touching or overlapping)."""
    o1, o2, o3, o4 = _orientation(a, b, c), _orientation(a, b, d), _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0 > o2) or (o1 < 0 < o2)) and ((o3 > 0 > o4) or (o3 < 0 < o4)):
        return True
    return ((o1 == 0 and _on_segment(a, b, c)) or (o2 == 0 and _on_segment(a, b, d))
            or (o3 == 0 and _on_segment(c, d, a)) or (o4 == 0 and _on_segment(c, d, b)))


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` is not a usable zone polygon, or None: fewer than 3 corners, a corner repeated, no
    area, or edges that cross or touch each other (corners are numbered from 1)."""
    count = len(points)
    if count < 3:
        return f"needs at least 3 corners, got {count}"
    for i in range(count):
        a, b = points[i], points[(i + 1) % count]
        if a[0] == b[0] and a[1] == b[1]:
            return f"corners {i + 1} and {(i + 1) % count + 1} are the same point"
    edges = [(points[i], points[(i + 1) % count]) for i in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            a, b = edges[i]
            c, d = edges[j]
            if j == i + 1 or (i == 0 and j == count - 1):  # neighbours share a corner: only folding back counts
                shared, first, second = (b, a, d) if j == i + 1 else (a, b, c)
                folds = (_orientation(first, shared, second) == 0
                         and (first[0] - shared[0]) * (second[0] - shared[0])
                         + (first[1] - shared[1]) * (second[1] - shared[1]) > 0)
                if folds:
                    return f"edges {i + 1} and {j + 1} fold back over each other"
                continue
            if segments_meet(a, b, c, d):
                return (f"crosses itself: edge {i + 1} (corners {i + 1}-{(i + 1) % count + 1}) and edge {j + 1} "
                        f"(corners {j + 1}-{(j + 1) % count + 1}) meet")
    area = 0.5 * sum(points[i][0] * points[(i + 1) % count][1] - points[(i + 1) % count][0] * points[i][1]
                     for i in range(count))
    if area == 0:
        return "has no area (its corners lie on one line)"
    return None


def line_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` is not a usable line, or None."""
    if len(points) != 2:
        return f"needs exactly 2 points, got {len(points)}"
    (x1, y1), (x2, y2) = points
    if x1 == x2 and y1 == y2:
        return "has zero length (both points are the same)"
    return None


def to_pixels(points: Sequence[Sequence[float]], units: str, width: int, height: int) -> np.ndarray:
    """(P, 2) float64 pixels of ``points`` written in ``units`` ("pixels" or "fractions")."""
    array = np.asarray(points, np.float64).reshape(-1, 2)
    if units == "fractions":
        array = array * np.array([width, height], np.float64)
    return array


# -- one frame's arrays ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ZoneShape:
    polygon: np.ndarray  # (P, 2) pixels
    anchor: str


@dataclass(frozen=True)
class LineShape:
    start: np.ndarray  # (2,) pixels
    end: np.ndarray
    anchor: str
    inside_is_left: bool
    margin: float  # pixels


def is_convex(polygon: np.ndarray) -> bool:
    """Whether a simple polygon turns the same way at every corner."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool((turns >= 0).all() or (turns <= 0).all())


@dataclass(frozen=True)
class Compiled:
    """A source's zones and lines at one frame size: ``weights @ boxes.T - bias``, one row per zone
    edge test, two per line (clearly inside, clearly outside) and one per line's position along it.

    Each box gets a *code*: its zones as bits 0..Z-1, then, for line l, bit Z + 2l when its anchor is more
    than the margin inside and bit Z + 2l + 1 when more than the margin outside. Convex zones (every
    zone convex) test each edge's half-plane, so one comparison of all the rows and one OR over them
    give the whole code (with few enough combinations, a weighted sum of the comparisons and a table:
    ``_sum_table``); otherwise the zones take the crossing-number test."""

    weights: np.ndarray  # (R, 4) float32
    bias: np.ndarray  # (R, 1) float32
    flag_bits: np.ndarray  # (F, 1) int64: the bit a negative row sets (convex edges and line flags)
    flag_start: int  # first row of the compared block
    zone_mask: int  # bits 0..Z-1
    zones: int
    lines: int
    edge_dy: np.ndarray | None  # (E, 1) non-convex zones: y2 - y1 of each edge
    edge_slope: np.ndarray | None  # (E, 1) dx / dy (0 for a level edge, which no horizontal ray crosses)
    edge_bits: np.ndarray | None  # (E, 1) int64, 1 << its zone
    margins: np.ndarray  # (L,) float32
    flag_bias: np.ndarray  # (F, 1) float32: the compared rows' bias
    flag_weights: np.ndarray | None = None  # (F,) float32: convex zones, few bits (below): each row's weight
    code_of_sum: np.ndarray | None = None  # int64: the code of each weighted sum of the compared rows
    # line -> its rows and float32 terms in ``distance``
    line_terms: dict[int, tuple] = field(default_factory=dict, compare=False, repr=False)
    # box count -> (flags, the flags' bias as a whole array), reused frame after frame
    buffers: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    def evaluate(self, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(each box's code, the rows) for (N, 4) boxes."""
        rows = np.dot(self.weights, boxes_xyxy.T)  # without the bias: it is folded into the comparison
        if self.code_of_sum is not None:
            # One comparison, then one product sums each box's flags, weighted, and a table turns the sum into
            # the code: fewer calls than a multiply, an OR over the rows and an XOR. The bias is compared as a
            # whole (F, N) array and the flags land in a buffer, both kept per box count: a broadcast (F, 1)
            # operand costs numpy twice the time on arrays this small.
            count = rows.shape[1]
            kept = self.buffers.get(count)
            if kept is None:
                if len(self.buffers) > 64:
                    self.buffers.clear()
                kept = self.buffers[count] = (np.empty((self.flag_bias.shape[0], count), bool),
                                              np.ascontiguousarray(np.broadcast_to(self.flag_bias,
                                                                                   (self.flag_bias.shape[0], count))))
            flags, bias = kept
            np.less(rows[:flags.shape[0]], bias, out=flags)
            return self.code_of_sum.take(np.dot(self.flag_weights, flags).astype(np.intp)), rows
        start = self.flag_start
        flags = rows[start:start + self.flag_bits.shape[0]] < self.flag_bias
        code = np.bitwise_or.reduce(flags * self.flag_bits, axis=0)
        if self.edge_dy is None:
            code ^= self.zone_mask  # the edge flags said "outside"
        else:
            # Crossing number: a ray from the anchor towards +x crosses edge k when the anchor's y lies between
            # the edge's end points (half-open, so a corner counts once) and the edge is to its right.
            edges = start // 2
            v, u = rows[:edges] - self.bias[:edges], rows[edges:start] - self.bias[edges:start]
            spans = (u < 0) != (u < self.edge_dy)
            hits = v < u * self.edge_slope
            hits &= spans
            code |= np.bitwise_xor.reduce(hits * self.edge_bits, axis=0)
        return code, rows

    def distances(self, rows: np.ndarray, box: int | np.ndarray, line: int | np.ndarray) -> tuple:
        """Signed distances (pixels, positive inside) and positions along of boxes against lines."""
        outside = self.flag_start + self.flag_bits.shape[0] - self.lines + line
        along = outside + self.lines
        return (rows[outside, box] - self.bias[outside, 0] - self.margins[line],
                rows[along, box] - self.bias[along, 0])

    def distance(self, rows: np.ndarray, box: int, line: int) -> tuple[float, float]:
        """``distances`` of one box against one line, as floats (the same arithmetic, in the rows' type)."""
        terms = self.line_terms.get(line)
        if terms is None:
            outside = self.flag_start + self.flag_bits.shape[0] - self.lines + line
            along = outside + self.lines
            terms = self.line_terms[line] = (outside, along, self.bias[outside, 0], self.bias[along, 0],
                                             self.margins[line])
        outside, along, outside_bias, along_bias, margin = terms
        return float(rows[outside, box] - outside_bias - margin), float(rows[along, box] - along_bias)


def compile_shapes(zones: Sequence[ZoneShape], lines: Sequence[LineShape]) -> Compiled:
    convex = all(is_convex(zone.polygon) for zone in zones)
    edge_rows, edge_bias, bits, dys, slopes = [], [], [], [], []
    u_rows, u_bias = [], []
    for index, zone in enumerate(zones):
        wx, wy = (np.array(w, np.float64) for w in ANCHORS[zone.anchor])
        polygon = zone.polygon
        clockwise_on_picture = _area(polygon) > 0  # y down: a positive shoelace area turns clockwise on screen
        for k in range(polygon.shape[0]):
            (x1, y1), (x2, y2) = polygon[k], polygon[(k + 1) % polygon.shape[0]]
            bits.append(1 << index)
            if convex:
                # Inside is to the right of each edge walking clockwise on the picture; the row is
                # negative outside: cross(edge, anchor - start) < 0 for a clockwise polygon.
                nx, ny = -(y2 - y1), x2 - x1
                if not clockwise_on_picture:
                    nx, ny = -nx, -ny
                edge_rows.append(nx * wx + ny * wy)
                edge_bias.append(nx * x1 + ny * y1)
            else:
                edge_rows.append(wx)
                edge_bias.append(x1)
                u_rows.append(wy)
                u_bias.append(y1)
                dys.append(y2 - y1)
                slopes.append((x2 - x1) / (y2 - y1) if y2 != y1 else 0.0)
    inside_rows, inside_bias, outside_rows, outside_bias, along_rows, along_bias, margins = [], [], [], [], [], [], []
    for line in lines:
        wx, wy = (np.array(w, np.float64) for w in ANCHORS[line.anchor])
        (x1, y1), (x2, y2) = line.start, line.end
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy)
        # On the picture (y down), the left of the direction start -> end is along (dy, -dx).
        nx, ny = dy / length, -dx / length
        if not line.inside_is_left:
            nx, ny = -nx, -ny
        distance, distance_bias = nx * wx + ny * wy, nx * x1 + ny * y1
        inside_rows.append(-distance)  # margin - d: negative when clearly inside
        inside_bias.append(-distance_bias - line.margin)
        outside_rows.append(distance)  # d + margin: negative when clearly outside
        outside_bias.append(distance_bias - line.margin)
        along_rows.append((dx * wx + dy * wy) / length ** 2)
        along_bias.append((dx * x1 + dy * y1) / length ** 2)
        margins.append(line.margin)
    z = len(zones)
    line_bits = [1 << (z + 2 * k) for k in range(len(lines))] + [1 << (z + 2 * k + 1) for k in range(len(lines))]
    if convex:
        blocks = [edge_rows, inside_rows, outside_rows, along_rows]
        biases = [edge_bias, inside_bias, outside_bias, along_bias]
        flag_bits, flag_start = [*bits, *line_bits], 0
    else:
        blocks = [edge_rows, u_rows, inside_rows, outside_rows, along_rows]
        biases = [edge_bias, u_bias, inside_bias, outside_bias, along_bias]
        flag_bits, flag_start = line_bits, 2 * len(edge_rows)

    def column(values: list) -> np.ndarray:
        return np.asarray(values, np.float64).reshape(-1, 1)

    weights = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in blocks], axis=0)
    bias = np.concatenate([column(b) for b in biases], axis=0)
    bias32 = bias.astype(np.float32)
    flag_weights, code_of_sum = _sum_table([zone.polygon.shape[0] for zone in zones], len(lines)) if convex \
        else (None, None)
    return Compiled(np.ascontiguousarray(weights, np.float32), bias32,
                    np.asarray(flag_bits, np.int64).reshape(-1, 1), flag_start, (1 << z) - 1, z, len(lines),
                    None if convex else column(dys).astype(np.float32),
                    None if convex else column(slopes).astype(np.float32),
                    None if convex else np.asarray(bits, np.int64).reshape(-1, 1),
                    np.asarray(margins, np.float32),
                    np.ascontiguousarray(bias32[flag_start:flag_start + len(flag_bits)]),
                    flag_weights, code_of_sum)


# Up to this many weighted sums (a table of int64: 512 KiB), convex zones take the summed path.
SUM_TABLE_SIZE = 1 << 16


def _sum_table(corners: Sequence[int], lines: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Weights of the compared rows of convex zones (``corners`` edges each) and ``lines`` lines, and the code
    of each weighted sum; (None, None) past SUM_TABLE_SIZE sums. The sum is a number in mixed radix: zone z's
    digit counts the edges its anchor is outside of (0 to ``corners[z]``: no carry into the next digit),
    each line flag is a binary digit. The sums are integers below 2**24: exact in float32, in any order of
    addition. The table is no larger than it must be: it is read at random, and it stays in the cache
    between frames only if it is small."""
    size = math.prod(count + 1 for count in corners) << (2 * lines)
    if size > SUM_TABLE_SIZE:
        return None, None
    weights, places, place = [], [], 1
    for count in corners:
        weights += [float(place)] * count
        places.append(place)
        place *= count + 1
    weights += [float(place << j) for j in range(2 * lines)]
    sums = np.arange(size, dtype=np.int64)
    codes = np.zeros(size, np.int64)
    z = len(corners)
    for index, (count, where) in enumerate(zip(corners, places)):
        codes |= ((sums // where) % (count + 1) == 0).astype(np.int64) << index  # no edge outside: in the zone
    # The flags' order: line k's inside flag is row k, its outside flag row L + k; their code bits Z + 2k, + 1.
    for j in range(2 * lines):
        bit = z + 2 * j if j < lines else z + 2 * (j - lines) + 1
        codes |= ((sums // (place << j)) & 1) << bit
    return np.asarray(weights, np.float32), codes


def _area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * (x @ np.roll(y, -1) - np.roll(x, -1) @ y))
