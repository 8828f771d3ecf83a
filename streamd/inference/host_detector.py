"""Detector with host-side pre/post-processing around any backend (the CPU path)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from streamd.frame import Frame
from streamd.inference.base import InferenceBackend
from streamd.inference.detector import DetectionResult, Detector, StageTimings
from streamd.yolox.preprocess import Convention, Letterbox, Preprocessor


class HostDetector(Detector):
    """Letterbox on the CPU, run the backend, decode on the CPU: one frame at a time, or with
    ``max_batch > 1`` (a backend with a dynamic batch dimension) several frames in one backend call.

    Several detectors may share one backend (one per pipeline worker); only the owner closes it.
    The decoder (``streamd.yolox.decoders.make_decoder``: ``decode(outputs) -> Detections`` in network-input
    pixels) is stateless after construction, so sharing it is safe too.
    """

    def __init__(self, backend: InferenceBackend, convention: Convention, decoder,
                 input_width: int, input_height: int, model_id: str, class_names: tuple[str, ...],
                 owns_backend: bool = True, max_batch: int = 1) -> None:
        batch_dim = backend.inputs[0].shape[0] if backend.inputs[0].shape else 1
        if max_batch < 1 or (max_batch > 1 and batch_dim is not None and batch_dim < max_batch):
            raise ValueError(f"max_batch {max_batch} does not fit the backend input "
                             f"{backend.inputs[0].name}{list(backend.inputs[0].shape)}")
        self.backend = backend
        self.max_batch = max_batch
        self._owns_backend = owns_backend
        self.decoder = decoder
        self.model_id = model_id
        self.class_names = class_names
        self._input_name = backend.inputs[0].name
        self._output_names = [spec.name for spec in backend.outputs]
        input_spec = backend.inputs[0]
        # A backend with preprocessing folded into its graph takes the uint8 canvas as it is.
        self._feeds_canvas = input_spec.dtype == np.uint8 and len(input_spec.shape) == 4 and input_spec.shape[3] == 3
        self._preprocessor = Preprocessor(convention, input_width, input_height,
                                          dtype=np.float32 if self._feeds_canvas else input_spec.dtype)
        self._batch_input: np.ndarray | None = None  # allocated on the first batch

    @property
    def convention(self) -> Convention:
        """The preprocessing convention it letterboxes with (``model.preprocessing`` resolved)."""
        return self._preprocessor.convention

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input."""
        return self._preprocessor.input_width, self._preprocessor.input_height

    def _network_input(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        if self._feeds_canvas:
            canvas, geometry = self._preprocessor.letterbox(image)
            return canvas[None], geometry
        return self._preprocessor(image)

    def network_input(self, image: np.ndarray) -> np.ndarray:
        """A copy of the backend input for one image (batch of 1)."""
        return self._network_input(image)[0].copy()

    def run_outputs(self, image: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for one image (layout probing, tests), copied."""
        network_input, _ = self._network_input(image)
        outputs = self.backend.infer({self._input_name: network_input})
        return [outputs[name].copy() for name in self._output_names]

    def submit(self, frame: Frame) -> list[DetectionResult]:
        started = time.perf_counter()
        network_input, geometry = self._network_input(frame.image)
        preprocessed = time.perf_counter()
        outputs = self.backend.infer({self._input_name: network_input})
        inferred = time.perf_counter()
        detections = self.decoder.decode([outputs[name] for name in self._output_names])
        detections = type(detections)(geometry.to_frame(detections.boxes_xyxy), detections.scores,
                                      detections.class_ids)
        decoded = time.perf_counter()
        timings = StageTimings(preprocessed - started, inferred - preprocessed, decoded - inferred)
        return [DetectionResult(frame, detections, timings)]

    def submit_batch(self, frames: Sequence[Frame]) -> list[DetectionResult]:
        """Every frame letterboxed into one batch, one backend call, decoded frame by frame."""
        if len(frames) <= 1 or self.max_batch == 1:
            return super().submit_batch(frames)
        if len(frames) > self.max_batch:
            raise ValueError(f"{len(frames)} frames exceed max_batch {self.max_batch}")
        count = len(frames)
        started = time.perf_counter()
        geometries = []
        for index, frame in enumerate(frames):
            network_input, geometry = self._network_input(frame.image)
            if self._batch_input is None:
                self._batch_input = np.empty((self.max_batch, *network_input.shape[1:]), network_input.dtype)
            self._batch_input[index] = network_input[0]
            geometries.append(geometry)
        preprocessed = time.perf_counter()
        outputs = self.backend.infer({self._input_name: self._batch_input[:count]})
        inferred = time.perf_counter()
        per_frame = [self.decoder.decode([outputs[name][i:i + 1] for name in self._output_names])
                     for i in range(count)]
        decoded = time.perf_counter()
        timings = StageTimings((preprocessed - started) / count, (inferred - preprocessed) / count,
                               (decoded - inferred) / count)
        return [DetectionResult(frame, type(d)(geometry.to_frame(d.boxes_xyxy), d.scores, d.class_ids), timings)
                for frame, d, geometry in zip(frames, per_frame, geometries)]

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()
