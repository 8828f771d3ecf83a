"""What a detected object looks like, cheaply: a colour signature of each box, for re-identification.

Motion alone cannot tell two objects apart where the detector boxes them together (one box over two
overlapping objects) or splits one into fragments: after they part, the Kalman filter's prediction
may fit either. Their colours usually differ. Each box's signature is a histogram of a fixed grid of
``GRID`` x ``GRID`` pixels sampled inside it (not every pixel: the cost must not grow with the
box's area), binned by hue where the pixel is coloured and by brightness where it is grey (clothes
are often black, white or grey), so it works on people as on coloured shapes. The bin of a colour
comes from a table over BGR at 5 bits a channel (made once, with OpenCV's HSV conversion), so a
frame's boxes take a few numpy calls whatever their number.

Two signatures compare by histogram intersection (``similarity``): 1 for the same colours in the
same proportions, 0 for nothing in common.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = 8  # pixels sampled per box side
HUE_BINS = 12  # 15 degrees of hue each (OpenCV's hue runs 0-179)
VALUE_BINS = 4  # brightness bins for the grey pixels
DIMENSIONS = HUE_BINS + VALUE_BINS
# A pixel counts as coloured from this saturation and brightness on (OpenCV's 0-255 scale); below
# either, its hue is noise and its brightness is what describes it.
MIN_SATURATION = 60
MIN_VALUE = 50
_FRACTIONS = (np.arange(GRID) + 0.5) / GRID
_LEVEL_BITS = 5  # per channel, in the bin table
# A colour's row in the bin table from its 5-bit channels (B, G, R): exact in float64, and one matrix
# product instead of three shifts and ors on integer vectors.
_PACK = np.array([1 << (2 * _LEVEL_BITS), 1 << _LEVEL_BITS, 1], np.float64)
_OFFSETS = np.zeros(0, np.intp)  # grown by _box_offsets
_SHARES = np.zeros(0)
_FRAME_CONSTANTS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # by (width, height)


def _bin_table() -> np.ndarray:
    """(2 ** (3 * _LEVEL_BITS),) bin of each quantised BGR colour (the centre of its cell)."""
    levels = 1 << _LEVEL_BITS
    step = 256 // levels
    b, g, r = np.meshgrid(*[np.arange(levels) * step + step // 2] * 3, indexing="ij")
    bgr = np.stack([b, g, r], axis=-1).reshape(-1, 1, 3).astype(np.uint8)
    hue, saturation, value = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).reshape(-1, 3).T.astype(np.intp)
    coloured = (saturation >= MIN_SATURATION) & (value >= MIN_VALUE)
    return np.where(coloured, hue * HUE_BINS // 180, HUE_BINS + value * VALUE_BINS // 256).astype(np.intp)


_BINS = _bin_table()


def _grid_indices(image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(GRID * GRID * K,) flat indices of the boxes' grid pixels (clipped to the image), interleaved: the
    first grid pixel of every box, then the second... (each step below then runs over the K boxes, not
    over a box's GRID points, which at tracker sizes costs half as much)."""
    height, width = image.shape[:2]
    constants = _FRAME_CONSTANTS.get((width, height))
    if constants is None:
        constants = _FRAME_CONSTANTS[(width, height)] = (
            np.array([[width - 1], [height - 1], [width], [height]], np.float64),  # clip of x1, y1, x2, y2
            np.array([[[1]], [[width]]], np.intp))  # pixels per step in x and in y
    bounds, strides = constants
    # Coordinates as rows (x1, y1, x2, y2): the steps below then run over contiguous memory.
    corners = np.array(np.asarray(boxes_xyxy).reshape(-1, 4).T, np.float64, order="C")
    np.maximum(corners, 0, out=corners)
    np.minimum(corners, bounds, out=corners)
    # The GRID sample positions per axis, (x y, GRID, K). They stay below the box's far edge, which is
    # clipped to the image's size, and the near edge to its last pixel: all inside the image.
    points = _FRACTIONS[:, None] * (corners[2:] - corners[:2])[:, None, :]
    points += corners[:2, None, :]
    offsets = points.astype(np.intp)
    offsets *= strides
    return (offsets[1, :, None, :] + offsets[0, None, :, :]).reshape(-1)  # (row, column, box)


def sample_pixels(image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(K, GRID * GRID, 3) pixels of a HxWx3 uint8 ``image`` on the grid inside each box, row by row."""
    pixels = image.reshape(-1, 3).take(_grid_indices(image, boxes_xyxy), axis=0)
    return np.ascontiguousarray(pixels.reshape(GRID * GRID, -1, 3).transpose(1, 0, 2))


def _signatures(pixels: np.ndarray, count: int, interleaved: bool) -> np.ndarray:
    """``count`` signatures of (count * GRID * GRID, 3) uint8 BGR pixels, box after box or ``interleaved``
    (``_grid_indices``'s order)."""
    bins = _BINS[np.dot(pixels >> (8 - _LEVEL_BITS), _PACK).astype(np.intp)]
    offsets, shares = _box_offsets(count)
    # Each box's bins go to its own part of the frame's joined histogram.
    if interleaved:
        bins.reshape(GRID * GRID, count)[...] += offsets[::GRID * GRID]
    else:
        bins += offsets
    # Each pixel adds its share, 1 / GRID^2 (a power of two: the sums are exact, in any order).
    return np.bincount(bins, shares, minlength=count * DIMENSIONS).reshape(count, DIMENSIONS)


def _box_offsets(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's box's first bin in the frame's joined histogram, box after box, and each pixel's share
    of its box's histogram."""
    global _OFFSETS, _SHARES
    if _OFFSETS.shape[0] < count * GRID * GRID:
        _OFFSETS = np.repeat(np.arange(2 * count) * DIMENSIONS, GRID * GRID)
        _SHARES = np.full(_OFFSETS.shape[0], 1.0 / (GRID * GRID))
    return _OFFSETS[:count * GRID * GRID], _SHARES[:count * GRID * GRID]


def signatures_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """(K, DIMENSIONS) float64 histograms (each row sums to 1) of (K, GRID * GRID, 3) uint8 BGR pixels
    (``sample_pixels``)."""
    count = pixels.shape[0]
    if count == 0:
        return np.zeros((0, DIMENSIONS))
    return _signatures(pixels.reshape(-1, 3), count, interleaved=False)


def colour_signatures(image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(K, DIMENSIONS) signatures of the boxes of a HxWx3 uint8 BGR ``image``: ``signatures_from_pixels``
    of ``sample_pixels``, without putting the pixels box after box (the histogram does not need it)."""
    count = int(np.asarray(boxes_xyxy).reshape(-1, 4).shape[0])
    if count == 0:
        return np.zeros((0, DIMENSIONS))
    pixels = image.reshape(-1, 3).take(_grid_indices(image, boxes_xyxy), axis=0)
    return _signatures(pixels, count, interleaved=True)


def similarity(signatures_a: np.ndarray, signatures_b: np.ndarray) -> np.ndarray:
    """(A, B) histogram intersection, in [0, 1]."""
    return np.minimum(signatures_a[:, None, :], signatures_b[None, :, :]).sum(axis=2)


def pair_similarity(signatures_a: np.ndarray, signatures_b: np.ndarray) -> np.ndarray:
    """(P,) histogram intersection of row i of ``signatures_a`` with row i of ``signatures_b``."""
    return np.add.reduce(np.minimum(signatures_a, signatures_b), axis=1)  # sum()'s wrapper costs more
