"""Build the detector a model config asks for: backend, input size, layout, pre/post-processing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from streamd.config.schema import ModelConfig
from streamd.errors import BackendError, ModelLayoutError
from streamd.inference.detector import Detector
from streamd.inference.host_detector import HostDetector
from streamd.inference.registry import BackendOptions, detector_builder, open_backend, resolve_backend_name
from streamd.yolox.decoders import layout_family, make_decoder
from streamd.yolox.layout import detect_layout, input_size, resolve_layout
from streamd.yolox.metadata import ModelMetadata, read_metadata
from streamd.yolox.postprocess import YoloxDecoder
from streamd.yolox.preprocess import resolve_convention

log = logging.getLogger(__name__)


def check_batch_matches_single(detector: HostDetector) -> None:
    """Two different probe frames as one batch must give the outputs they give one at a time (a model
    whose batch was made dynamic by a graph edit is checked here once, at start-up). BackendError if not."""
    width, height = detector.input_size
    rng = np.random.default_rng(0)
    probes = [np.full((height, width, 3), 114, np.uint8), rng.integers(0, 256, (height, width, 3), np.uint8)]
    singles = [detector.run_outputs(image) for image in probes]
    batch_input = np.concatenate([detector.network_input(image) for image in probes])
    batched = detector.backend.infer({detector.backend.inputs[0].name: batch_input})
    for index, single in enumerate(singles):
        for spec, expected in zip(detector.backend.outputs, single):
            got = batched[spec.name][index:index + 1]
            if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-3):
                raise BackendError(f"model.max_batch = {detector.max_batch}: output {spec.name} of batch item "
                                   f"{index} differs from the same frame run alone; this model does not batch "
                                   "correctly (set model.max_batch = 1 or export it with a dynamic batch)")


def cpu_parallelism(model: ModelConfig) -> tuple[int, int]:
    """(workers, threads per worker) for a host backend; see ModelConfig.workers."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = model.workers or (2 if cpus >= 2 else 1)
    threads = model.threads or (max(1, cpus // workers) if workers > 1 else 0)
    return workers, threads


def build_detector(model: ModelConfig) -> Detector:
    """One detector with the backend's default threading (check, bench's raw loop, tests)."""
    return build_detectors(model, workers=1, threads=model.threads)[0]


def build_detectors(model: ModelConfig, workers: int = 0, threads: int = 0) -> list[Detector]:
    """The detectors of the pipeline's workers for ``model``, built by its backend's builder
    (``streamd.inference.registry.DETECTOR_BUILDERS``). Raises BackendError / ModelLayoutError."""
    backend_name = resolve_backend_name(model.backend)
    model_id = model.model_id or Path(model.path).stem
    return detector_builder(backend_name)(model, model_id, workers, threads)


def _family(model: ModelConfig, metadata: ModelMetadata) -> str:
    """The model family, for model.preprocessing = "auto": the configured layout's, else the one its
    declared output shapes and metadata fit (YOLOX when they fit none: the backend's outputs decide later)."""
    if model.layout != "auto":
        return layout_family(model.layout)
    if metadata.outputs and metadata.imgsz:
        width, height = model.input_width or metadata.imgsz[0], model.input_height or metadata.imgsz[1]
        try:
            return layout_family(detect_layout(metadata.outputs, width, height, len(model.classes),
                                               family=metadata.family, end2end=metadata.end2end))
        except ModelLayoutError:
            pass
    return metadata.family or "yolox"


def build_host_detectors(model: ModelConfig, model_id: str, workers: int = 0, threads: int = 0) -> list[Detector]:
    """Open the backend once and wire one HostDetector per pipeline worker (they share the backend).

    ``workers=0``: as many as ``cpu_parallelism`` says.
    """
    backend_name = resolve_backend_name(model.backend)
    if workers == 0:
        workers, threads = cpu_parallelism(model)
    metadata = read_metadata(model.path)
    family = _family(model, metadata)
    convention = resolve_convention(model.preprocessing, family)
    extra: dict[str, object] = {"fold_preprocessing": convention} if model.fold_preprocessing else {}
    if model.max_batch > 1:
        extra["max_batch"] = model.max_batch  # the backend makes a fixed batch of 1 dynamic
    backend = open_backend(backend_name, BackendOptions(model.path, threads=threads, precision=model.precision,
                                                        extra=extra))
    try:
        configured = (model.input_width, model.input_height)
        if not model.input_width and metadata.imgsz and None in backend.inputs[0].shape[-2:]:
            configured = metadata.imgsz  # a dynamic-shape export: the size it was exported at
        width, height = input_size(backend.inputs, *configured)
        probe_decoder = YoloxDecoder("yolox", width, height, len(model.classes), model.score_threshold,
                                     model.nms_threshold)
        detector = HostDetector(backend, convention, probe_decoder, width, height, model_id, model.classes,
                                max_batch=model.max_batch)
        grey = np.full((height, width, 3), 114, np.uint8)
        layout = resolve_layout(model.layout, backend.outputs, width, height, len(model.classes),
                                probe=lambda: detector.run_outputs(grey)[0], family=metadata.family,
                                end2end=metadata.end2end)
        detector.decoder = make_decoder(layout, width, height, len(model.classes), model.score_threshold,
                                        model.nms_threshold, model.max_detections)
        if model.max_batch > 1:
            check_batch_matches_single(detector)
        detectors: list[Detector] = [detector]
        for _ in range(workers - 1):
            detectors.append(HostDetector(backend, convention, detector.decoder, width, height, model_id,
                                          model.classes, owns_backend=False, max_batch=model.max_batch))
        log.info("model %s: %s, input %dx%d, layout %s, preprocessing %s, %d detector thread(s) x %s backend "
                 "thread(s), batches of up to %d", model_id, backend.describe(), width, height, layout, convention.name,
                 workers, threads or "default", model.max_batch)
        return detectors
    except (BackendError, ModelLayoutError):
        backend.close()
        raise
