"""Wire a GpuDetector from a model config: TensorRT engine (cached build), layout, conventions."""

from __future__ import annotations

import logging

import numpy as np

from streamd.config.schema import ModelConfig
from streamd.decode.preprocess import CONVENTIONS, Preprocessor
from streamd.decode.yolox import OutputInfo, boxes_look_decoded, detect_layout
from streamd.errors import BackendError, ModelLayoutError
from streamd.gpu.batch_detector import BatchGpuDetector
from streamd.gpu.detector import GpuDetector
from streamd.inference.factory import input_size
from streamd.inference.registry import BackendOptions, open_backend

log = logging.getLogger(__name__)


def _layout(backend, model: ModelConfig, width: int, height: int) -> str:
    if model.layout != "auto":
        return model.layout
    layout = detect_layout([OutputInfo(s.name, s.shape) for s in backend.outputs],
                           width, height, len(model.classes))
    if layout == "yolox":
        # Same shape with or without in-graph decode: one probe inference on a grey frame tells them apart.
        network_input, _ = Preprocessor(CONVENTIONS[model.preprocessing], width, height,
                                        dtype=backend.inputs[0].dtype)(np.full((height, width, 3), 114, np.uint8))
        output = backend.infer({backend.inputs[0].name: network_input})[backend.outputs[0].name]
        if boxes_look_decoded(output):
            layout = "yolox-decoded"
    return layout


def build_from_config(model: ModelConfig, model_id: str) -> GpuDetector | BatchGpuDetector:
    """``max_batch`` 1: the double-buffered GpuDetector; more: the BatchGpuDetector (engine built with a
    batch profile 1..max_batch, opt max_batch; it also takes NVDEC device frames)."""
    max_batch = getattr(model, "max_batch", 1)
    backend = open_backend("tensorrt", BackendOptions(model.path, threads=model.threads, precision=model.precision,
                                                      extra={"max_batch": max_batch}))
    try:
        width, height = input_size(backend, model)
        layout = _layout(backend, model, width, height)
        engine = backend.engine
        engine.set_input_shapes(engine.static_shapes(batch=1))
        if max_batch > 1:
            detector = BatchGpuDetector(engine, CONVENTIONS[model.preprocessing], len(model.classes),
                                        model.score_threshold, model.nms_threshold, max_batch=max_batch,
                                        layout=layout, max_detections=model.max_detections, model_id=model_id,
                                        class_names=model.classes, owns_engine=False, on_close=backend.close)
        else:
            detector = GpuDetector(engine, CONVENTIONS[model.preprocessing], len(model.classes),
                                   model.score_threshold, model.nms_threshold, layout=layout,
                                   max_detections=model.max_detections, model_id=model_id,
                                   class_names=model.classes, owns_engine=False, on_close=backend.close)
        detector.warm_up()
    except (BackendError, ModelLayoutError):
        backend.close()
        raise
    log.info("model %s: %s on the GPU pipeline, input %dx%d, layout %s, preprocessing %s", model_id,
             backend.describe(), width, height, layout, model.preprocessing)
    return detector
