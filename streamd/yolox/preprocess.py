"""Letterbox preprocessing, the one implementation every path uses (daemon, bench, quantize).

Two conventions:
- ``yolox``: what the official YOLOX exports expect: BGR, 0-255, no normalisation, image at the
  top-left of the canvas, pad value 114, ``int(side * ratio)`` resize (as YOLOX's ``preproc``).
- ``legacy``: what the seed tutorial did: RGB, /255, ImageNet mean/std, centred, pad 128.
- ``ultralytics``: what Ultralytics YOLO exports (YOLOv5u, YOLOv8, YOLO11, YOLO26) expect: RGB, 0-1,
  image centred on the canvas, pad 114, ``round(side * ratio)`` resize (as its ``LetterBox``); boxes map
  back through each side's own scale (resized / frame side, as its ``scale_boxes``).
- ``rtdetr``: what Ultralytics RT-DETR exports expect: RGB, 0-1, the frame stretched over the whole input
  (no letterbox, so the aspect ratio changes: its predictor's ``scale_fill``).

The GPU kernel implements the same maths; ``Convention.channel_gain`` / ``channel_offset`` are the
per-output-channel affine terms it uses, so both read one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np


@dataclass(frozen=True)
class Convention:
    """How pixels become network input: ``out[c] = pixel[src_channel[c]] * gain[c] + offset[c]``."""

    name: str
    swap_rb: bool
    pad_value: int
    centered: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Resized side: round(side * ratio) (Ultralytics) rather than int(side * ratio) (YOLOX).
    round_resize: bool = False
    # The frame resized to the whole input, each side on its own (RT-DETR): no padding.
    stretch: bool = False

    @property
    def channel_gain(self) -> np.ndarray:
        return np.array([self.scale / s for s in self.std], dtype=np.float32)

    @property
    def channel_offset(self) -> np.ndarray:
        return np.array([-m / s for m, s in zip(self.mean, self.std)], dtype=np.float32)

    @property
    def is_identity(self) -> bool:
        return bool(np.all(self.channel_gain == 1.0) and np.all(self.channel_offset == 0.0))


YOLOX = Convention("yolox", swap_rb=False, pad_value=114, centered=False, scale=1.0,
                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
LEGACY = Convention("legacy", swap_rb=True, pad_value=128, centered=True, scale=1.0 / 255.0,
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
ULTRALYTICS = Convention("ultralytics", swap_rb=True, pad_value=114, centered=True, scale=1.0 / 255.0,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), round_resize=True)
RTDETR = Convention("rtdetr", swap_rb=True, pad_value=114, centered=False, scale=1.0 / 255.0,
                    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), stretch=True)
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (YOLOX, LEGACY, ULTRALYTICS, RTDETR)}
# The convention each model family's exports expect (model.preprocessing = "auto").
FAMILY_CONVENTIONS: dict[str, str] = {"yolox": "yolox", "ultralytics": "ultralytics", "rtdetr": "rtdetr"}


def resolve_convention(name: str, family: str = "yolox") -> Convention:
    """``model.preprocessing``: a convention by name, or ``auto``: the one ``family``'s exports expect."""
    if name == "auto":
        return CONVENTIONS[FAMILY_CONVENTIONS.get(family, "yolox")]
    return CONVENTIONS[name]


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one frame's letterbox: maps network-input pixels back to frame pixels.

    ``ratio`` is the one scale the letterbox chose; ``ratio_x`` / ``ratio_y`` (0: ``ratio``) are what boxes
    are divided by on the way back, per side where the convention's reference maps that way.
    """

    ratio: float
    pad_x: int
    pad_y: int
    resized_width: int
    resized_height: int
    frame_width: int
    frame_height: int
    ratio_x: float = 0.0
    ratio_y: float = 0.0

    # Built once per geometry (the GPU path caches one geometry per frame size and maps every frame).
    @cached_property
    def _offset(self) -> np.ndarray:
        return np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)

    @cached_property
    def _scale(self) -> np.ndarray:
        ratio_x, ratio_y = self.ratio_x or self.ratio, self.ratio_y or self.ratio
        return np.array([ratio_x, ratio_y, ratio_x, ratio_y], dtype=np.float32)

    @cached_property
    def _upper(self) -> np.ndarray:
        return np.array([self.frame_width, self.frame_height, self.frame_width, self.frame_height], np.float32)

    def to_frame(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Network-input xyxy boxes -> frame xyxy boxes, clipped to the frame. Returns a new array."""
        frame_boxes = (boxes_xyxy - self._offset) / self._scale
        frame_boxes.clip(0, self._upper, out=frame_boxes)
        return frame_boxes


def letterbox_geometry(frame_width: int, frame_height: int, input_width: int, input_height: int,
                       centered: bool, round_resize: bool = False, stretch: bool = False) -> Letterbox:
    ratio = min(input_width / frame_width, input_height / frame_height)
    if stretch:
        return Letterbox(ratio, 0, 0, input_width, input_height, frame_width, frame_height,
                         input_width / frame_width, input_height / frame_height)
    # int() truncation, as YOLOX's own preproc (round() as Ultralytics' LetterBox with round_resize);
    # at least one pixel for degenerate inputs. The centred pad is (input - resized) // 2 either way:
    # Ultralytics' round(difference / 2 - 0.1) is the same integer.
    size = round if round_resize else int
    resized_width = min(input_width, max(1, size(frame_width * ratio)))
    resized_height = min(input_height, max(1, size(frame_height * ratio)))
    pad_x = (input_width - resized_width) // 2 if centered else 0
    pad_y = (input_height - resized_height) // 2 if centered else 0
    if round_resize:  # Ultralytics maps back through each side's rounded scale, not the one ratio
        return Letterbox(ratio, pad_x, pad_y, resized_width, resized_height, frame_width, frame_height,
                         resized_width / frame_width, resized_height / frame_height)
    return Letterbox(ratio, pad_x, pad_y, resized_width, resized_height, frame_width, frame_height)


def convention_geometry(convention: Convention, frame_width: int, frame_height: int, input_width: int,
                        input_height: int) -> Letterbox:
    """The geometry ``convention`` gives a frame of that size (letterbox or stretch, rounding as its reference)."""
    return letterbox_geometry(frame_width, frame_height, input_width, input_height, convention.centered,
                              convention.round_resize, convention.stretch)


class Preprocessor:
    """Frame (HxWx3 uint8 BGR) -> network input (1x3xHxW), reusing its buffers between calls.

    Not thread-safe: one per worker. The returned array is overwritten by the next call and must
    not be written to: only the resized region is rewritten per frame, the padding once per size.
    """

    def __init__(self, convention: Convention, input_width: int, input_height: int,
                 dtype: np.dtype | type = np.float32) -> None:
        self.convention = convention
        self.input_width = input_width
        self.input_height = input_height
        self._canvas = np.full((input_height, input_width, 3), convention.pad_value, np.uint8)
        self._input = np.empty((1, 3, input_height, input_width), dtype=dtype)
        self._gain = convention.channel_gain.reshape(3, 1, 1)
        self._offset = convention.channel_offset.reshape(3, 1, 1)
        self._identity = convention.is_identity
        self._last_geometry: Letterbox | None = None
        # The geometry whose padding ``_input`` holds, and uint8 planes of its resized region.
        self._input_geometry: Letterbox | None = None
        self._planes: list[np.ndarray] = []

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Resize and pad into the uint8 canvas (HxWx3, network channel order not applied)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        frame_height, frame_width = image.shape[:2]
        geometry = self._last_geometry
        if geometry is None or (geometry.frame_width, geometry.frame_height) != (frame_width, frame_height):
            geometry = convention_geometry(self.convention, frame_width, frame_height, self.input_width,
                                           self.input_height)
            # The frame size changed: repaint the whole canvas so no old pixels survive in the pad.
            self._canvas[...] = self.convention.pad_value
            self._last_geometry = geometry
        region = self._canvas[geometry.pad_y:geometry.pad_y + geometry.resized_height,
                              geometry.pad_x:geometry.pad_x + geometry.resized_width]
        # Straight into the canvas (OpenCV writes through the strided view): no intermediate copy.
        resized = cv2.resize(image, (geometry.resized_width, geometry.resized_height), dst=region,
                             interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(resized, self._canvas):  # an OpenCV that allocated instead
            region[...] = resized
        return self._canvas, geometry

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        canvas, geometry = self.letterbox(image)
        if geometry is not self._input_geometry:
            # New frame size: the whole input once (its padding stays from here on), and uint8 planes
            # sized to the resized region for the frames that follow.
            self._convert(canvas, self._input[0])
            self._planes = [np.empty((geometry.resized_height, geometry.resized_width), np.uint8)
                            for _ in range(3)]
            self._input_geometry = geometry
            return self._input, geometry
        # Only the resized region changes from frame to frame (25 % of a 416x416 input is padding
        # for a 4:3 frame). HWC -> CHW through cv2.split into preallocated planes, then one cast
        # copy per channel: cheaper than splitting the whole canvas into fresh arrays. The values
        # are the same bits: same ops, same order.
        top, left = geometry.pad_y, geometry.pad_x
        bottom, right = top + geometry.resized_height, left + geometry.resized_width
        channels = cv2.split(canvas[top:bottom, left:right], self._planes)
        self._cast(channels, self._input[0, :, top:bottom, left:right])
        return self._input, geometry

    def _convert(self, canvas: np.ndarray, network_input: np.ndarray) -> None:
        self._cast(cv2.split(canvas), network_input)

    def _cast(self, channels: Sequence[np.ndarray], network_input: np.ndarray) -> None:
        if self.convention.swap_rb:
            channels = channels[::-1]
        for plane, channel in zip(network_input, channels):
            np.copyto(plane, channel, casting="unsafe")
        if not self._identity:
            network_input *= self._gain
            network_input += self._offset


def preprocess(image: np.ndarray, convention: Convention, input_width: int, input_height: int
               ) -> tuple[np.ndarray, Letterbox]:
    """One-off convenience: a fresh (1x3xHxW float32) input for ``image``."""
    network_input, geometry = Preprocessor(convention, input_width, input_height)(image)
    return network_input.copy(), geometry
