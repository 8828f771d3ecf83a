"""Calibration and evaluation images: listing (folder or list file), loading through the daemon's
own preprocessing, and the ONNX Runtime data reader built on them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamd.quantize.errors import QuantizeError
from streamd.quantize.progress import progress
from streamd.yolox.preprocess import Convention, Preprocessor

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(source: str | Path) -> list[Path]:
    """Image paths of a folder (sorted by name) or of a list file (one path a line, ``#`` comments,
    relative paths resolved against the list file's folder), in that order."""
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        images = []
        for raw_line in path.read_text(encoding="utf-8").splitlines():
            line = raw_line.strip()
            if line and not line.startswith("#"):
                entry = Path(line)
                images.append(entry if entry.is_absolute() else path.parent / entry)
    else:
        raise QuantizeError(f"calibration source {path} is neither a folder nor a list file")
    if not images:
        raise QuantizeError(f"calibration source {path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images


@dataclass
class ImageSet:
    """Preprocessed network inputs (N x 3 x H x W float32) and what was skipped on the way."""

    paths: list[Path]
    inputs: np.ndarray
    skipped: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def load_images(paths: Sequence[Path], convention: Convention, input_width: int, input_height: int,
                label: str = "loading images") -> ImageSet:
    """Read and letterbox ``paths`` with the daemon's :class:`Preprocessor`; unreadable files are
    skipped and counted (a warning names each), an all-unreadable set is an error."""
    preprocessor = Preprocessor(convention, input_width, input_height)
    loaded: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[Path] = []
    for path in progress(paths, len(paths), label):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            logger.warning("skipping unreadable image %s", path)
            skipped.append(Path(path))
            continue
        network_input, _ = preprocessor(image)
        loaded.append(network_input.copy())  # the preprocessor reuses its buffer
        kept.append(Path(path))
    if not loaded:
        raise QuantizeError(f"none of the {len(paths)} images could be read ({skipped[0]} ...): "
                            "check the calibration folder or list file")
    return ImageSet(kept, np.concatenate(loaded), skipped)


class ArrayDataReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed inputs, one image a batch.

    Duck-typed (``get_next`` / ``rewind``) rather than subclassed so importing this module does not
    import onnxruntime.quantization.
    """

    def __init__(self, input_name: str, inputs: np.ndarray, label: str = "calibrating") -> None:
        self.input_name = input_name
        self.inputs = inputs
        self.label = label
        self.rewind()

    def rewind(self) -> None:
        self._iterator = iter(progress(range(self.inputs.shape[0]), self.inputs.shape[0], self.label))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._iterator, None)
        return None if index is None else {self.input_name: self.inputs[index:index + 1]}

    def __len__(self) -> int:
        return int(self.inputs.shape[0])
