"""Build the GPU detector from a model config: its own TensorRT engine (cached build), layout, conventions.

The detector builder of backend ``tensorrt`` (``streamd.inference.registry.DETECTOR_BUILDERS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from streamd.config.schema import ModelConfig
from streamd.cuda import runtime
from streamd.cuda.device_info import device_info
from streamd.errors import BackendError, ModelLayoutError
from streamd.gpu.batch_detector import BatchGpuDetector
from streamd.gpu.detector import GpuDetector
from streamd.gpu.engine import DeviceEngine
from streamd.gpu.zero_copy import ZeroCopyGpuDetector, resolve_zero_copy
from streamd.gpu.zero_copy_batch import ZeroCopyBatchGpuDetector
from streamd.inference.base import describe_io
from streamd.inference.detector import Detector
from streamd.inference.registry import BackendOptions
from streamd.inference.tensorrt_backend import TensorRTBackend, TensorRTEngine, open_engine
from streamd.yolox.decoders import GPU_LAYOUTS, layout_family
from streamd.yolox.layout import input_size, resolve_layout
from streamd.yolox.metadata import read_metadata
from streamd.yolox.preprocess import Preprocessor, resolve_convention

log = logging.getLogger(__name__)


def _probe_first_output(engine: TensorRTEngine, model: ModelConfig, width: int, height: int) -> np.ndarray:
    """The first output for a grey frame, through a host backend borrowing the engine (closed after)."""
    with TensorRTBackend(engine=engine, device=model.device) as backend:
        network_input, _ = Preprocessor(resolve_convention(model.preprocessing), width, height,
                                        dtype=engine.inputs[0].dtype)(np.full((height, width, 3), 114, np.uint8))
        return backend.infer({engine.inputs[0].name: network_input})[engine.outputs[0].name].copy()


def use_model_device(device: int) -> None:
    """Make ``model.device`` current on this thread (the engine, kernels and buffers are created on it);
    BackendError naming the key when no such GPU is visible."""
    count = runtime.device_count()
    if device >= count:
        raise BackendError(f"model.device = {device}: only {count} CUDA device(s) are visible"
                           + (f" (0..{count - 1})" if count else "") + "; set model.device to one of them "
                           "(CUDA_VISIBLE_DEVICES renumbers them from 0)")
    runtime.use_device(device)


def build_gpu_detector(model: ModelConfig, model_id: str,
                       engine_opener: Callable[[BackendOptions], DeviceEngine] = open_engine,
                       ) -> GpuDetector | BatchGpuDetector:
    """``max_batch`` 1: the double-buffered GpuDetector; more: the BatchGpuDetector (engine built with a
    batch profile 1..max_batch, opt max_batch; it also takes NVDEC device frames). It owns the engine.
    ``engine_opener``: TensorRT's by default; ``streamd bench --standin-engine`` passes the torch stand-in's."""
    max_batch = model.max_batch
    use_model_device(model.device)
    engine = engine_opener(BackendOptions(model.path, threads=model.threads, device=model.device,
                                          precision=model.precision, extra={"max_batch": max_batch}))
    detector: GpuDetector | BatchGpuDetector | None = None
    try:
        width, height = input_size(engine.inputs, model.input_width, model.input_height)
        metadata = read_metadata(model.path)
        layout = resolve_layout(model.layout, engine.outputs, width, height, len(model.classes),
                                probe=lambda: _probe_first_output(engine, model, width, height),
                                family=metadata.family, end2end=metadata.end2end)
        if layout not in GPU_LAYOUTS:
            raise ModelLayoutError(f"model layout '{layout}': the GPU path decodes {', '.join(GPU_LAYOUTS)}; "
                                   "run this model on the CPU path (model.backend = \"onnxruntime\")")
        convention = resolve_convention(model.preprocessing, layout_family(layout))
        engine.set_input_shapes(engine.static_shapes(batch=1))
        # Integrated GPU (Jetson), or forced: host frames read in place from mapped host memory.
        gpu = device_info(model.device)
        zero_copy = resolve_zero_copy(model.zero_copy, gpu)
        if max_batch > 1:
            batch_class = ZeroCopyBatchGpuDetector if zero_copy else BatchGpuDetector
            detector = batch_class(engine, convention, len(model.classes),
                                   model.score_threshold, model.nms_threshold, max_batch=max_batch,
                                   layout=layout, max_detections=model.max_detections, model_id=model_id,
                                   class_names=model.classes, device=model.device)
        else:
            detector_class = ZeroCopyGpuDetector if zero_copy else GpuDetector
            detector = detector_class(engine, convention, len(model.classes),
                                      model.score_threshold, model.nms_threshold, layout=layout,
                                      max_detections=model.max_detections, model_id=model_id,
                                      class_names=model.classes, device=model.device)
        log.info("GPU %d: %s, %s GPU, can map host memory: %s; model %s: %s (model.zero_copy = %s)", gpu.ordinal,
                 gpu.name, gpu.kind, "yes" if gpu.can_map_host_memory else "no", model_id,
                 "host frames read in place from mapped host memory" if zero_copy
                 else "host frames uploaded from pinned host memory", model.zero_copy)
        detector.warm_up()
    except (BackendError, ModelLayoutError):
        if detector is not None:
            detector.close()  # closes the engine it owns
        else:
            engine.close()
        raise
    log.info("model %s: %s on the GPU pipeline (device %d), input %dx%d, layout %s, preprocessing %s, batches of "
             "up to %d", model_id, describe_io("tensorrt", engine.inputs, engine.outputs), model.device, width, height,
             layout, model.preprocessing, max_batch)
    return detector


def build_gpu_detectors(model: ModelConfig, model_id: str, workers: int = 0, threads: int = 0) -> list[Detector]:
    """Registry entry: one GPU detector; it overlaps frames itself (in-flight buffers), so one worker
    drives it whatever ``workers`` says (``threads`` is the engine build's concern, not the pipeline's)."""
    return [build_gpu_detector(model, model_id)]
