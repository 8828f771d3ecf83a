"""A synthetic scene source: seeded, deterministic frames with exact ground truth.

Each seed is one scene: a textured background and a few coloured shapes (the classes) that drift,
rotate, grow and shrink, overlap and wrap around the frame edges. ``SyntheticScene.render(index)``
is a pure function of (seed, width, height, index): the same arguments give the same pixels on
every run and machine, which is what lets the accuracy test regenerate the ground truth of any
frame index a subscriber received.

Ground truth is taken from the rendered masks, not from the shape parameters: a box is the
bounding box of the object's *visible* pixels (after clipping to the frame and occlusion by shapes
drawn above it), in pixel-edge coordinates (``x2 = last column + 1``). Objects with less than
``MIN_VISIBILITY`` of their area visible, or a visible box under ``MIN_BOX_SIDE_PX``, are not
labelled: they are too ambiguous to count as either hits or misses.

Scenes are sized relative to ``min(width, height)``, so a scene looks the same at any resolution.
The shipped detector was trained on seeds >= ``TRAINING_SEED_BASE``; seeds below it are held out
(the demo config and the accuracy test use them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from streamd.config.schema import SourceConfig
from streamd.errors import SourceError
from streamd.sources.readers import FrameReader

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
CIRCLE, SQUARE, TRIANGLE, CROSS = range(len(CLASSES))

MIN_VISIBILITY = 0.35
MAX_SHAPES = 7  # per scene; identities are shape + MAX_SHAPES * pass
MIN_BOX_SIDE_PX = 4
TRAINING_SEED_BASE = 1_000_000
DEFAULT_FPS = 10.0

# cv2 drawing with 4 fractional bits: sub-pixel motion without anti-aliasing, so every drawn pixel
# belongs to exactly one shape and the masks are the image.
_SHIFT = 4
_ONE = 1 << _SHIFT
NOISE_LEVEL = 6  # +- grey levels of per-frame sensor noise


@dataclass(frozen=True)
class GroundTruth:
    """One frame's labelled objects, in frame pixels."""

    boxes_xyxy: np.ndarray  # (K, 4) float32, pixel-edge coordinates, inside the frame
    class_ids: np.ndarray  # (K,) int64, indices into CLASSES
    visibility: np.ndarray  # (K,) float32, visible fraction of the object's area
    # (K,) int64, the object's identity over time (>= 1): one id per pass of a shape across the
    # frame, so a shape that leaves through one edge comes back at the other as a new object.
    track_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class SceneLayers:
    """A frame and what it was made of (``visible_masks``/``colours`` align with ``truth``)."""

    image: np.ndarray
    truth: GroundTruth
    visible_masks: tuple[np.ndarray, ...]  # HxW bool: the labelled object's visible pixels
    colours: tuple[tuple[int, int, int], ...]  # BGR, before sensor noise
    any_object: np.ndarray  # HxW bool: pixels of every shape, labelled or not


@dataclass(frozen=True)
class _Shape:
    class_id: int
    color_bgr: tuple[int, int, int]
    size: float  # base side / diameter, as a fraction of min(width, height)
    size_amplitude: float  # relative size oscillation
    size_period: float  # frames
    size_phase: float
    start: tuple[float, float]  # fraction of the wrap-around extent
    velocity: tuple[float, float]  # fraction of min(width, height) per frame
    angle: float  # radians
    angular_velocity: float  # radians per frame


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    # Saturated and bright, so shapes stand out from the muted background whatever their hue.
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(170, 256)]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _scene_shapes(seed: int) -> tuple[_Shape, ...]:
    rng = np.random.default_rng([seed, 1])
    count = int(rng.integers(3, MAX_SHAPES + 1))
    shapes = []
    for _ in range(count):
        speed = rng.uniform(0.002, 0.012)
        heading = rng.uniform(0, 2 * math.pi)
        shapes.append(_Shape(
            class_id=int(rng.integers(0, len(CLASSES))),
            color_bgr=_random_color(rng),
            size=float(rng.uniform(0.06, 0.24)),
            size_amplitude=float(rng.uniform(0.0, 0.3)),
            size_period=float(rng.uniform(40, 200)),
            size_phase=float(rng.uniform(0, 2 * math.pi)),
            start=(float(rng.random()), float(rng.random())),
            velocity=(speed * math.cos(heading), speed * math.sin(heading)),
            angle=float(rng.uniform(0, 2 * math.pi)),
            angular_velocity=float(rng.uniform(-0.05, 0.05)),
        ))
    return tuple(shapes)


@functools.lru_cache(maxsize=8)
def _background(seed: int, width: int, height: int) -> np.ndarray:
    """The scene's static textured background (cached: it is the costly part of a frame)."""
    rng = np.random.default_rng([seed, 2])
    base = rng.uniform(50, 170, size=(3, 4, 3)).astype(np.float32)
    # Pull the colours towards grey: a muted background keeps the shapes the most saturated thing.
    base = 0.6 * base.mean(axis=2, keepdims=True) + 0.4 * base
    image = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    cells = max(4, min(width, height) // 12)
    texture = rng.normal(0, 14, size=(cells * height // min(width, height) + 1,
                                      cells * width // min(width, height) + 1, 3)).astype(np.float32)
    image += cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 5, size=(height, width, 1)).astype(np.float32)  # fine grain
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    # Thin muted lines and rings: clutter with edges and corners the detector must learn to ignore.
    side = min(width, height)
    for _ in range(int(rng.integers(6, 14))):
        grey = int(rng.integers(40, 200))
        colour = (grey + int(rng.integers(-20, 21)), grey, grey + int(rng.integers(-20, 21)))
        colour = tuple(int(np.clip(c, 0, 255)) for c in colour)
        thickness = int(rng.integers(1, 4))
        if rng.random() < 0.7:
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(canvas, p1, p2, colour, thickness, cv2.LINE_8)
        else:
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(canvas, centre, int(rng.uniform(0.03, 0.2) * side), colour, thickness, cv2.LINE_8)
    canvas.flags.writeable = False
    return canvas


def _outline(shape: _Shape, centre: tuple[float, float], side_px: float, angle: float) -> np.ndarray:
    """(P, 2) polygon vertices in frame pixels (float) for the polygon classes."""
    if shape.class_id == SQUARE:
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    elif shape.class_id == TRIANGLE:
        # Equilateral, side = size, centred on its centroid.
        h = math.sqrt(3) / 2
        unit = np.array([[0.0, -2 * h / 3], [0.5, h / 3], [-0.5, h / 3]])
    else:  # CROSS: a plus sign whose arms are a third of its width
        a, b = 1 / 6, 0.5
        unit = np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a],
                         [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return unit @ rotation.T * side_px + np.array(centre)


def _area(class_id: int, side_px: float) -> float:
    return {CIRCLE: math.pi / 4, SQUARE: 1.0, TRIANGLE: math.sqrt(3) / 4, CROSS: 5 / 9}[class_id] * side_px ** 2


class SyntheticScene:
    """One seeded scene at one resolution; ``render(index)`` gives frame ``index`` and its truth."""

    def __init__(self, seed: int, width: int = 640, height: int = 480) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if width < 32 or height < 32:
            raise ValueError(f"frame must be at least 32x32, got {width}x{height}")
        self.seed = seed
        self.width = width
        self.height = height
        self.shapes = _scene_shapes(seed)

    def _place(self, shape: _Shape, index: int) -> tuple[tuple[float, float], float, float]:
        """Centre (px), side (px) and angle of ``shape`` at frame ``index``: closed-form in index."""
        side = min(self.width, self.height)
        side_px = shape.size * side * (1 + shape.size_amplitude * math.sin(
            2 * math.pi * index / shape.size_period + shape.size_phase))
        # Wrap around an extent one full (largest) shape wider than the frame on each side, so a
        # shape leaves completely before it reappears at the other edge: no popping.
        margin = shape.size * (1 + shape.size_amplitude) * side * 0.75
        extent_x, extent_y = self.width + 2 * margin, self.height + 2 * margin
        x = (shape.start[0] * extent_x + shape.velocity[0] * side * index) % extent_x - margin
        y = (shape.start[1] * extent_y + shape.velocity[1] * side * index) % extent_y - margin
        return (x, y), side_px, shape.angle + shape.angular_velocity * index

    def track_id(self, shape_index: int, index: int) -> int:
        """Identity of shape ``shape_index`` at frame ``index``: a new one each time it wraps around.

        The wrap count on each axis changes by one, always in the same direction (constant
        velocity), each time the shape has left the frame completely, so |wraps x| + |wraps y|
        numbers the shape's passes across the frame."""
        shape = self.shapes[shape_index]
        side = min(self.width, self.height)
        margin = shape.size * (1 + shape.size_amplitude) * side * 0.75
        extent_x, extent_y = self.width + 2 * margin, self.height + 2 * margin
        wraps_x = math.floor((shape.start[0] * extent_x + shape.velocity[0] * side * index) / extent_x)
        wraps_y = math.floor((shape.start[1] * extent_y + shape.velocity[1] * side * index) / extent_y)
        return 1 + shape_index + MAX_SHAPES * (abs(wraps_x) + abs(wraps_y))

    def _mask(self, shape: _Shape, centre: tuple[float, float], side_px: float, angle: float) -> np.ndarray:
        mask = np.zeros((self.height, self.width), np.uint8)
        if shape.class_id == CIRCLE:
            cv2.circle(mask, (round(centre[0] * _ONE), round(centre[1] * _ONE)), round(side_px / 2 * _ONE),
                       1, -1, cv2.LINE_8, _SHIFT)
        else:
            points = np.round(_outline(shape, centre, side_px, angle) * _ONE).astype(np.int32)
            cv2.fillPoly(mask, [points], 1, cv2.LINE_8, _SHIFT)
        return mask.view(bool)

    def render(self, index: int) -> tuple[np.ndarray, GroundTruth]:
        """Frame ``index`` (HxWx3 uint8 BGR) and its ground truth."""
        layers = self.layers(index)
        return layers.image, layers.truth

    def layers(self, index: int) -> SceneLayers:
        """Frame ``index`` with what it was made of: for tests that check truth against pixels."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        image = _background(self.seed, self.width, self.height).copy()
        placed = [(shape, *self._place(shape, index)) for shape in self.shapes]
        masks = [self._mask(shape, centre, side_px, angle) for shape, centre, side_px, angle in placed]
        # Later shapes are drawn on top: paint bottom-up, measure visibility top-down.
        for (shape, *_), mask in zip(placed, masks):
            image[mask] = shape.color_bgr
        boxes, class_ids, visibilities, visible_masks, colours, track_ids = [], [], [], [], [], []
        covered = np.zeros((self.height, self.width), bool)
        for shape_index, (shape, _, side_px, _), mask in reversed(list(zip(range(len(placed)), placed, masks))):
            visible = mask & ~covered
            covered |= mask
            visibility = float(visible.sum()) / max(_area(shape.class_id, side_px), 1.0)
            if visibility < MIN_VISIBILITY:
                continue
            rows = np.flatnonzero(visible.any(axis=1))
            cols = np.flatnonzero(visible.any(axis=0))
            box = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE_PX:
                continue
            boxes.append(box)
            class_ids.append(shape.class_id)
            visibilities.append(min(visibility, 1.0))
            visible_masks.append(visible)
            colours.append(shape.color_bgr)
            track_ids.append(self.track_id(shape_index, index))
        noise_rng = np.random.default_rng([self.seed, 3, index])
        noise = noise_rng.integers(-NOISE_LEVEL, NOISE_LEVEL + 1, size=(self.height, self.width, 1), dtype=np.int16)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        truth = GroundTruth(np.array(boxes, np.float32).reshape(-1, 4), np.array(class_ids, np.int64),
                            np.array(visibilities, np.float32), np.array(track_ids, np.int64))
        return SceneLayers(image, truth, tuple(visible_masks), tuple(colours), covered)


def render(seed: int, index: int, width: int = 640, height: int = 480) -> tuple[np.ndarray, GroundTruth]:
    """Frame ``index`` of scene ``seed`` at ``width`` x ``height``: a pure function of its arguments."""
    return _scene(seed, width, height).render(index)


@functools.lru_cache(maxsize=8)
def _scene(seed: int, width: int, height: int) -> SyntheticScene:
    return SyntheticScene(seed, width, height)


class SyntheticReader(FrameReader):
    """``FrameReader`` for ``kind = "synthetic"``: frames 0, 1, 2, ... of scene ``config.seed``.

    Pacing is the capture thread's job (``fps``, default 10; ``pace = "fast"`` reads flat out).
    ``max_frames = 0`` is unbounded; otherwise the stream ends there, or restarts at frame 0 when
    the source loops.
    """

    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._scene: SyntheticScene | None = None
        self._next_index = 0

    def open(self) -> None:
        try:
            self._scene = SyntheticScene(self._config.seed, self._config.width, self._config.height)
        except ValueError as error:
            raise SourceError(f"source {self._config.id}: {error}") from error
        self._next_index = 0

    def read(self) -> tuple[np.ndarray, object | None] | None:
        if self._scene is None:
            return None
        if self._config.max_frames and self._next_index >= self._config.max_frames:
            return None
        image, truth = self._scene.render(self._next_index)
        self._next_index += 1
        return image, truth

    @property
    def native_fps(self) -> float:
        return self._config.fps or DEFAULT_FPS

    def rewind(self) -> bool:
        self._next_index = 0
        return self._scene is not None

    def close(self) -> None:
        self._scene = None
